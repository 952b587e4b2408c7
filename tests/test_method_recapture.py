"""The recapture method: real recaptures vs originals, small images, a corrupt model, the training smoke run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forensics.finding import Status
from forensics.image import load_image
from forensics.learn.recapture_input import PATCH, PATCHES, prepare
from forensics.learn.runtime import MODELS_DIR, load_model
from forensics.methods.recapture import LINE, Recapture
from tests.conftest import SHARED_DATA, dataset, jpeg_bytes

#: Files of one contributor (LegenD742) of recapture_phone, photos of screens and direct photos: the shipped
#: model scores these recaptures above +6 and these originals below -3.7 (its line is 0.36), a wide margin.
RECAPTURED = ("WhatsApp_Image_2026-07-02_at_20.50.38.jpeg", "WhatsApp_Image_2026-07-02_at_20.50.37_3_.jpeg")
AUTHENTIC = ("WhatsApp_Image_2026-07-02_at_20.00.52.jpeg", "WhatsApp_Image_2026-07-02_at_20.00.44_2_.jpeg")


def _finding(path: Path, method: Recapture | None = None):
    return (method or Recapture()).run(load_image(path.read_bytes(), filename=path.name))


def _by_name(names: tuple[str, ...]) -> list[Path]:
    samples = {s.path.name: s.path for s in dataset("recapture_phone")}
    return [samples[n] for n in names]


def test_recaptured_scores_above_the_same_contributors_originals() -> None:
    recaptured = [_finding(p) for p in _by_name(RECAPTURED)]
    authentic = [_finding(p) for p in _by_name(AUTHENTIC)]
    assert all(f.status is Status.OK for f in recaptured + authentic)
    assert min(f.details["statistic"] for f in recaptured) > max(f.details["statistic"] for f in authentic)
    assert all(f.details["patches_used"] == PATCHES for f in recaptured + authentic)


def test_line_matches_the_card() -> None:
    card = json.loads((MODELS_DIR / "recapture.json").read_text())
    assert LINE == pytest.approx(card["line"], abs=1e-3)


def test_small_image_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = Recapture().run(load_image(jpeg_bytes(astronaut[:100, :300]), filename="small.jpg"))
    assert finding.status is Status.NOT_APPLICABLE
    assert "128 px" in finding.summary


def test_input_is_deterministic_and_full_resolution(astronaut: np.ndarray) -> None:
    a, b = prepare(astronaut), prepare(astronaut.copy())
    assert a.patches.shape == (PATCHES, 4, PATCH, PATCH)
    assert np.array_equal(a.patches, b.patches) and np.array_equal(a.corners, b.corners)


def test_corrupt_model_gives_an_error_finding(tmp_path: Path, astronaut: np.ndarray) -> None:
    folder = tmp_path / "models"
    shutil.copytree(MODELS_DIR, folder, ignore=shutil.ignore_patterns("*.md"))
    data = bytearray((folder / "recapture.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "recapture.onnx").write_bytes(bytes(data))
    finding = Recapture(models=folder).run(load_image(jpeg_bytes(astronaut), filename="a.jpg"))
    assert finding.status is Status.ERROR
    assert "corrupt" in finding.summary


def test_missing_model_gives_an_error_finding(tmp_path: Path, astronaut: np.ndarray) -> None:
    finding = Recapture(models=tmp_path).run(load_image(jpeg_bytes(astronaut), filename="a.jpg"))
    assert finding.status is Status.ERROR
    assert "not installed" in finding.summary


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # training.common.export uses torch's TorchScript exporter
def test_tiny_training_run_exports_a_model_that_reproduces_its_card(tmp_path: Path) -> None:
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data {SHARED_DATA} is absent")
    from training.common import RunSettings, reference_inputs
    from training.recapture import train

    path = train(RunSettings(SHARED_DATA, tmp_path / "work", tmp_path / "models", 0, "tiny"))
    model = load_model("recapture", path.parent)
    refs = reference_inputs(model.card["inputs"])
    out = model.run(**refs)[0]
    expected = np.array(model.card["reference"]["outputs"][0], np.float32)
    assert np.allclose(out.ravel(), expected, atol=model.card["reference"]["tolerance"])
