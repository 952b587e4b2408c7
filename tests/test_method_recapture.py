"""The recapture method: real recaptures vs originals, small images, a corrupt model, the shared embedding, the training smoke run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forensics.finding import Status
from forensics.image import load_image
from forensics.learn import clip_encoder
from forensics.learn.runtime import MODELS_DIR, load_model
from forensics.methods.ai_generated import AiGenerated
from forensics.methods.recapture import LINE, Recapture
from tests.conftest import SHARED_DATA, dataset, jpeg_bytes

#: Files of one contributor (LegenD742) of recapture_phone, photos of screens and direct photos. In-sample (the
#: shipped head was fitted on them): logits 0.61 and 0.61 for these recaptures, -0.78 and -1.18 for these
#: originals, against a line of 0.14; held-out figures are in forensics/models/recapture.md.
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
    assert all(f.label == "looks recaptured" and f.score > 50 for f in recaptured)
    assert all(f.label == "no sign of recapture" and f.score < 50 for f in authentic)
    assert min(f.details["logit"] for f in recaptured) > max(f.details["logit"] for f in authentic)
    # a flagged finding says what else it reads as a recapture; a clear one does not
    assert all("printed matter or of a screen filling the frame" in f.summary for f in recaptured)
    assert not any("printed matter" in f.summary for f in authentic)


def test_camera_originals_read_as_direct_photos() -> None:
    camera = sorted(dataset("dresden_natural"), key=lambda s: s.path.name)[:6]
    findings = [_finding(s.path) for s in camera]
    assert all(f.status is Status.OK and f.score < 50 for f in findings), [f.score for f in findings]


def test_line_matches_the_card() -> None:
    card = json.loads((MODELS_DIR / "recapture.json").read_text())
    assert LINE == pytest.approx(card["line"], abs=1e-3)


def test_small_image_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = Recapture().run(load_image(jpeg_bytes(astronaut[:100, :300]), filename="small.jpg"))
    assert finding.status is Status.NOT_APPLICABLE
    assert f"{clip_encoder.MIN_SIDE} px" in finding.summary


def test_the_ai_probe_and_the_recapture_head_share_one_embedding_per_image(astronaut: np.ndarray) -> None:
    image = load_image(jpeg_bytes(astronaut), filename="a.jpg")
    first = clip_encoder.embed_image(image)
    assert clip_encoder.embed_image(image) is first and not first.flags.writeable
    assert np.allclose(first, clip_encoder.embed(image.rgb), atol=1e-6)
    AiGenerated().run(image)
    Recapture().run(image)
    assert clip_encoder.embed_image(image) is first
    other = load_image(jpeg_bytes(astronaut[::-1]), filename="b.jpg")
    assert clip_encoder.embed_image(other) is not first


def test_one_forward_pass_gives_the_embedding_and_the_class_token(astronaut: np.ndarray) -> None:
    """The AI-generated probe reads the projected embedding, the recapture head the last layer's class
    token: both unit vectors of one forward pass, and different representations (the projection is
    a learnt 768 -> 512 map after a layer norm, not a slice)."""
    features = clip_encoder.embed(load_image(jpeg_bytes(astronaut), filename="a.jpg").rgb)
    embedding, token = clip_encoder.embedding_of(features), clip_encoder.class_token_of(features)
    assert features.shape == (clip_encoder.FEATURES_DIM,) and features.dtype == np.float32
    assert embedding.shape == (clip_encoder.EMBED_DIM,) and token.shape == (clip_encoder.TOKEN_DIM,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5) and np.linalg.norm(token) == pytest.approx(1.0, abs=1e-5)
    card = json.loads((MODELS_DIR / "recapture.json").read_text())
    assert card["inputs"] == {"class_token": [1, clip_encoder.TOKEN_DIM]}


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
