"""Stored heatmaps: the float map the join fuses beside the PNG clients see, and maps stored before the float maps."""

import logging
from pathlib import Path

import numpy as np
import pytest

from forensics.render import from_gray_png
from service.heatmaps import float_key, load_heatmap, store_heatmap
from service.storage import LocalStorage, ObjectNotFound

KEY = "cases/c/images/i/heatmaps/noise.png"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path)


@pytest.fixture
def heatmap() -> np.ndarray:
    return np.random.default_rng(0).random((37, 53), dtype=np.float32)


def test_the_join_reads_the_map_rounded_to_float16_and_clients_the_png(storage: LocalStorage, heatmap: np.ndarray) -> None:
    store_heatmap(storage, KEY, heatmap)
    assert float_key(KEY) == "cases/c/images/i/heatmaps/noise.npy"
    loaded = load_heatmap(storage, KEY)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, heatmap.astype(np.float16).astype(np.float32))
    assert np.abs(loaded - heatmap).max() <= 2**-12  # float16's rounding on [0, 1]
    assert np.abs(from_gray_png(storage.get_bytes(KEY)) - heatmap).max() > 2**-12  # what fusing the PNGs lost


def test_a_map_stored_before_the_float_maps_is_read_from_its_png_with_a_warning(
    storage: LocalStorage, heatmap: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    store_heatmap(storage, KEY, heatmap)
    storage.delete(float_key(KEY))
    with caplog.at_level(logging.WARNING, logger="service.heatmaps"):
        loaded = load_heatmap(storage, KEY)
    np.testing.assert_array_equal(loaded, from_gray_png(storage.get_bytes(KEY)))
    assert "no float map" in caplog.text
    storage.delete(KEY)
    with pytest.raises(ObjectNotFound):
        load_heatmap(storage, KEY)
