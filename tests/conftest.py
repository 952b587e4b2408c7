"""Shared fixtures: the reference data beside the repository, and small generated images."""

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from forensics.dataset import Sample, read_index

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


#: Modules that run the service's own processes (Celery workers, ``forensics serve``) against
#: deadlines (every process gone within 20 s of a stop, lost work done within a minute): one
#: unit of work, so that they run one after another and never beside each other on the cores.
LIVE_PROCESS_MODULES = frozenset({"test_platform", "test_platform_embedded", "test_platform_embedded_stop", "test_platform_faults"})


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: harmless where it is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``--dist loadfile`` (scripts/test runs two processes), a test module per
    unit of work so that its module fixtures (databases, API servers, workers) are set up once,
    except that the live-process modules form one unit. (``--dist loadgroup`` would say it with
    marks, but pytest-xdist 3.8 cannot rename the node ids of pytest 9.2 that it relies on.)"""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LiveProcessesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return "live processes" if Path(module).stem in LIVE_PROCESS_MODULES else module

    return LiveProcessesTogether(config, log)


def dataset(name: str) -> list[Sample]:
    """The samples of ``../shared/data/<name>``, or skip the test with a clear message."""
    folder = SHARED_DATA / name
    if not (folder / "index.csv").exists():
        pytest.skip(f"reference data {folder} is absent (it lives beside the repository as ../shared/data)")
    return read_index(folder)


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's bundled astronaut photo (512x512 RGB), shipped with the package."""
    from skimage import data

    return data.astronaut()
