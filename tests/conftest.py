"""Shared fixtures: the reference data beside the repository, and small generated images."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.dataset import Sample, read_index

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
