"""The quality method: a learned 0-100 reading that never carries a tamper score.

A camera original must read higher than the same pixels blurred, made noisy or re-compressed
at JPEG quality 15; a missing or altered model is an error finding, never an exception; the
training command's tiny preset exports a model that reproduces its card's reference outputs.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensics import load_image
from forensics.finding import Status
from forensics.learn.quality_features import FEATURE_NAMES, MIN_SIDE, quality_features, tile_origins
from forensics.learn.runtime import MODELS_DIR, OnnxModel, load_model, reference_inputs
from forensics.methods.quality import POOR, Quality

from .conftest import REPO, SHARED_DATA, dataset, jpeg_bytes, png_bytes


@pytest.fixture(scope="module")
def camera_crop() -> np.ndarray:
    """The centre 768x1024 px of a Nikon D200 original (Dresden), pixels as the camera stored them."""
    sample = next(s for s in dataset("dresden_natural") if s.label == "authentic")
    rgb = load_image(sample.path.read_bytes()).rgb
    top, left = (rgb.shape[0] - 768) // 2 // 8 * 8, (rgb.shape[1] - 1024) // 2 // 8 * 8
    return np.ascontiguousarray(rgb[top : top + 768, left : left + 1024])


def _reproduces_its_card(model: OnnxModel) -> bool:
    reference = model.card["reference"]
    outputs = model.run(**reference_inputs(model.card["inputs"]))
    return all(
        np.allclose(got.ravel(), np.asarray(expected, np.float32), atol=reference["tolerance"])
        for got, expected in zip(outputs, reference["outputs"], strict=True)
    )


def _reading(data: bytes) -> float:
    finding = Quality().run(load_image(data))
    assert finding.status is Status.OK, finding.summary
    assert finding.score is None
    return float(finding.details["quality"])


def test_the_original_reads_higher_than_its_degraded_copies(camera_crop: np.ndarray) -> None:
    sharp = _reading(jpeg_bytes(camera_crop, 95))
    blurred = _reading(jpeg_bytes(cv2.GaussianBlur(camera_crop, (0, 0), 2.5), 95))
    noise = np.random.default_rng(0).normal(0.0, 15.0, camera_crop.shape)
    noisy = _reading(png_bytes(np.clip(camera_crop + noise, 0, 255).astype(np.uint8)))
    compressed = _reading(jpeg_bytes(camera_crop, 15))
    assert sharp >= 60, sharp
    assert blurred < sharp - 15, (sharp, blurred)
    assert noisy < sharp - 15, (sharp, noisy)
    assert compressed < sharp - 15, (sharp, compressed)


def test_a_poor_image_is_information_with_a_warning_not_a_score(camera_crop: np.ndarray) -> None:
    finding = Quality().run(load_image(jpeg_bytes(cv2.GaussianBlur(camera_crop, (0, 0), 4.0), 20)))
    assert finding.status is Status.OK and finding.score is None
    assert finding.label == "poor quality", finding.summary
    assert finding.details["quality"] < POOR and finding.details["low_quality"] is True
    assert "weak evidence of editing may be missed" in finding.details["warning"]
    assert finding.summary.startswith("Image quality ")
    assert set(finding.details["features"]) == set(FEATURE_NAMES)
    assert finding.details["model"]["name"] == "quality"
    json.dumps(finding.to_dict())


def test_a_tiny_image_is_not_applicable() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (MIN_SIDE - 1, 200, 3), dtype=np.uint8)
    finding = Quality().run(load_image(png_bytes(rgb)))
    assert finding.status is Status.NOT_APPLICABLE
    assert f"at least {MIN_SIDE} px" in finding.summary


def test_the_smallest_accepted_image_is_measured() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (MIN_SIDE, MIN_SIDE, 3), dtype=np.uint8)
    finding = Quality().run(load_image(png_bytes(rgb)))
    assert finding.status is Status.OK and finding.score is None


def test_features_read_bounded_tiles_of_a_large_image() -> None:
    """A 24 MP photo is measured on at most 16 tiles of 128 px, on the 8x8 grid, so its cost does not grow with its size."""
    origins = tile_origins(4000, 6000, 128)
    assert len(origins) == 16
    assert all(top % 8 == 0 and left % 8 == 0 and top + 128 <= 4000 and left + 128 <= 6000 for top, left in origins)
    luma = np.random.default_rng(3).normal(128, 10, (4000, 6000)).astype(np.float32)
    features = quality_features(luma)
    assert features.shape == (len(FEATURE_NAMES),) and np.isfinite(features).all()


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_model_is_an_error_finding(tmp_path: Path, damage: str, astronaut: np.ndarray) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(MODELS_DIR / f"quality{suffix}", folder / f"quality{suffix}")
    onnx = folder / "quality.onnx"
    if damage == "corrupt":
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx.write_bytes(bytes(data))
    else:
        onnx.unlink()
    finding = Quality(models_dir=folder).run(load_image(jpeg_bytes(astronaut)))
    assert finding.status is Status.ERROR and finding.score is None
    assert "quality model is unavailable" in finding.summary
    assert ("corrupt" if damage == "corrupt" else "missing") in finding.summary


def test_the_shipped_model_reproduces_its_card() -> None:
    model = load_model("quality")
    assert model.card["features"] == list(FEATURE_NAMES)
    assert _reproduces_its_card(model)
    assert (MODELS_DIR / "quality.md").exists()
    assert (MODELS_DIR / "quality.onnx").stat().st_size <= 30 * 1024 * 1024


def test_tiny_training_exports_a_model_that_reproduces_its_card(tmp_path: Path) -> None:
    """``python -m training quality --size tiny``: crops, degradations, a few epochs, export, card."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data {SHARED_DATA} is absent (it lives beside the repository as ../shared/data)")
    models = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, "-m", "training", "quality", "--size", "tiny", "--work", str(tmp_path / "work"), "--models", str(models)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "quality Spearman correlation" in result.stdout and "never trained on" in result.stdout
    model = load_model("quality", models)
    assert model.card["features"] == list(FEATURE_NAMES)
    assert model.card["command"] == "python -m training quality --size tiny --seed 0"
    assert _reproduces_its_card(model)
    readings = model.run(features=np.zeros((3, len(FEATURE_NAMES)), np.float32))[0]
    assert readings.shape == (3, 4) and ((readings >= 0) & (readings <= 100)).all()
