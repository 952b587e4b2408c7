"""The method registry matches the folder, and every method honours the interface."""

import pkgutil

import pytest

import forensics.methods as methods_pkg
from forensics import load_image
from forensics.finding import Status
from forensics.methods import REGISTRY, get_method
from forensics.methods.base import Method

from .conftest import jpeg_bytes

MODULES = sorted(m.name for m in pkgutil.iter_modules(methods_pkg.__path__) if m.name != "base")


def test_every_method_module_is_registered() -> None:
    registered = {type(m).__module__.rsplit(".", 1)[-1] for m in REGISTRY.values()}
    assert registered == set(MODULES)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_method_declares_its_identity(name: str) -> None:
    method = REGISTRY[name]
    assert isinstance(method, Method)
    assert method.name == name
    assert method.version
    assert method.applies_to


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_method_result_shape(name: str, astronaut) -> None:
    """Each method returns its own, JSON-ready Finding whose score agrees with its status."""
    import json

    finding = REGISTRY[name].run(load_image(jpeg_bytes(astronaut), filename="astronaut.jpg"))
    assert finding.method == name
    assert finding.status is not Status.ERROR, finding.summary
    assert finding.summary.strip()
    json.dumps(finding.to_dict())
    if finding.score is not None:
        assert finding.status is Status.OK
        assert 0.0 <= finding.score <= 100.0
        assert "statistic" in finding.details
    if finding.heatmap is not None:
        assert finding.heatmap.ndim == 2
        assert float(finding.heatmap.min()) >= 0.0 and float(finding.heatmap.max()) <= 1.0
