"""ai_generated: metadata signals on real C2PA fixtures and generated files, the bounded learned pixel probe."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from forensics.finding import Status
from forensics.image import load_image
from forensics.learn import clip_encoder
from forensics.learn.runtime import ModelUnavailable, load_model, reference_inputs
from forensics.methods.ai_generated import PIXEL_CAP, PIXEL_SCORE_CAP, AiGenerated
from tests.conftest import SHARED_DATA, dataset, jpeg_bytes, png_bytes
from training import ai_pixels
from training.common import RunSettings

METHOD = AiGenerated()


def _fixture(name: str) -> bytes:
    sample = next(s for s in dataset("c2pa_fixtures") if s.path.name == name)
    return sample.path.read_bytes()


def test_c2pa_fixture_with_ai_source_type_is_flagged() -> None:
    finding = METHOD.run(load_image(_fixture("ocsp.jpg")))
    assert finding.status is Status.OK and finding.score is not None and finding.score > 95
    assert "compositeWithTrainedAlgorithmicMedia" in finding.summary
    assert finding.details["c2pa"]["validation_state"] == "Valid"
    assert finding.details["c2pa"]["untrusted_signer"] is True


def test_c2pa_fixtures_without_ai_claims_stay_low_and_broken_ones_do_not_crash() -> None:
    outcomes = {}
    for sample in dataset("c2pa_fixtures"):
        try:
            image = load_image(sample.path.read_bytes())
        except Exception:  # SVG/JXL/PSD fixtures are not images the engine decodes
            continue
        finding = METHOD.run(image)
        assert finding.status is Status.OK, (sample.path.name, finding.summary)
        outcomes[sample.path.name] = finding
    flagged = {name for name, f in outcomes.items() if f.details["metadata_points"] >= 50}
    assert flagged == {"ocsp.jpg"}
    # The learned pixel probe does flag some fixtures (synthetic graphics, not photos: C.jpg, sample1.gif...),
    # but pixels alone stay at or below PIXEL_SCORE_CAP.
    assert all(f.score is not None and f.score <= PIXEL_SCORE_CAP + 0.01 for n, f in outcomes.items() if n != "ocsp.jpg")
    assert outcomes["E-sig-CA.jpg"].details["c2pa"]["validation_state"] == "Invalid"
    assert "claimSignature.mismatch" in outcomes["E-sig-CA.jpg"].details["c2pa"]["failures"]
    assert outcomes["XCA.jpg"].details["c2pa"]["validation_state"] == "Invalid"
    assert outcomes["no_alg.jpg"].details["c2pa"]["error"]
    assert outcomes["cloud.jpg"].details["c2pa"]["remote_url"].startswith("https://")
    assert outcomes["no_manifest.jpg"].details["missing_manifest_reference"] is True
    # algorithmicMedia (not a trained model) is reported but not counted as AI.
    assert outcomes["C.jpg"].details["c2pa"]["manifests"][0]["digital_source_types"] == ["algorithmicMedia"]
    assert outcomes["C.jpg"].details["metadata_points"] == 0


def test_png_generator_parameters_and_software_name(astronaut: np.ndarray) -> None:
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sd15")
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG", pnginfo=info)
    finding = METHOD.run(load_image(buf.getvalue()))
    assert finding.score is not None and finding.score > 95
    assert "parameters" in finding.summary

    exif = Image.Exif()
    exif[0x0131] = "Midjourney"
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90, exif=exif)
    finding = METHOD.run(load_image(buf.getvalue()))
    assert finding.score is not None and finding.score > 90
    assert "Midjourney" in finding.summary


def test_xmp_digital_source_type(astronaut: np.ndarray) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90, xmp=xmp)
    finding = METHOD.run(load_image(buf.getvalue()))
    assert finding.score is not None and finding.score > 90
    assert finding.details["xmp"]["digital_source_types"] == ["trainedAlgorithmicMedia"]


def test_plain_photo_has_no_evidence_and_pixel_points_are_capped(astronaut: np.ndarray) -> None:
    for data in (png_bytes(astronaut), jpeg_bytes(astronaut, 90)):
        finding = METHOD.run(load_image(data))
        assert finding.status is Status.OK and finding.details["evidence"] == []
        probe = finding.details["pixel_probe"]
        assert probe["status"] == "ok" and 0 <= probe["probability"] <= 1
        assert probe["encoder"]["revision"] == clip_encoder.ENCODER_REVISION
        assert 0 <= finding.details["pixel_points"] <= PIXEL_CAP
        assert finding.score is not None and finding.score <= PIXEL_SCORE_CAP + 0.01
    # the cap itself: the largest pixel points give a score of PIXEL_SCORE_CAP, below certainty
    assert abs(METHOD.logistic.score(PIXEL_CAP) - PIXEL_SCORE_CAP) < 0.01


def test_generated_gallery_images_score_above_camera_originals() -> None:
    """In-sample (the shipped head was fitted on these files): the probe orders them as trained.

    Held-out figures are in forensics/models/ai_pixels.md (leave-one-generator-out).
    """
    gallery = [s for s in dataset("imagen_gallery") if s.label == "ai"]
    generated = [s for g in ("disco", "dmin", "glid3") for s in sorted(gallery, key=lambda s: s.path.name) if s.path.parent.name == g][::10]
    camera = sorted(dataset("dresden_natural"), key=lambda s: s.path.name)[:6]
    p_gen = [METHOD.run(load_image(s.path.read_bytes())).details["pixel_probe"]["probability"] for s in generated]
    p_cam = [METHOD.run(load_image(s.path.read_bytes())).details["pixel_probe"]["probability"] for s in camera]
    assert np.median(p_gen) > np.median(p_cam)
    assert float((np.asarray(p_gen)[:, None] > np.asarray(p_cam)[None, :]).mean()) > 0.8


def test_the_probe_reads_camera_originals_alike_on_every_cpu() -> None:
    """The INT8 encoder's integer products are exact (``session.x64quantprecision``): on a CPU
    without VNNI the saturating default gave these six camera originals probabilities of
    0.56-0.62. What still differs between CPUs is the float arithmetic around the products
    (AVX2, AVX-512 and AMX kernels, fused or not), which moves the embedding by about 1 %
    (cosine 0.99) and these probabilities by up to 0.04; 0.17-0.19 on an AVX2-only CPU."""
    camera = sorted(dataset("dresden_natural"), key=lambda s: s.path.name)[:6]
    measured = [METHOD.run(load_image(s.path.read_bytes())).details["pixel_probe"]["probability"] for s in camera]
    expected = [0.186, 0.173, 0.203, 0.173, 0.196, 0.167]  # an AVX-512/AMX CPU, 2026-12-07
    np.testing.assert_allclose(measured, expected, atol=0.08)


def test_the_pixel_probe_reads_images_from_its_minimum_side(astronaut: np.ndarray) -> None:
    side = clip_encoder.MIN_SIDE
    below = METHOD.run(load_image(png_bytes(astronaut[: side - 1, :300])))
    assert below.details["pixel_probe"]["status"] == "not applicable" and below.details["pixel_points"] == 0
    assert METHOD.run(load_image(png_bytes(astronaut[:side, :300]))).details["pixel_probe"]["status"] == "ok"


def test_too_small_for_the_probe_is_not_applicable_but_metadata_still_counts() -> None:
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 40, 3), 128, np.uint8)).save(buf, format="PNG", pnginfo=info)
    finding = METHOD.run(load_image(buf.getvalue()))
    assert finding.status is Status.OK and finding.score is not None and finding.score > 95
    assert finding.details["pixel_probe"]["status"] == "not applicable"
    assert f"at least {clip_encoder.MIN_SIDE} px" in finding.details["pixel_probe"]["reason"]
    assert finding.details["pixel_points"] == 0


def test_corrupt_encoder_leaves_the_metadata_part_working(astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_encoder, "_session", None)
    monkeypatch.setattr(clip_encoder, "ENCODER_SHA256", "0" * 64)
    finding = METHOD.run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.OK and finding.score is not None and finding.score < 5
    probe = finding.details["pixel_probe"]
    assert probe["status"] == "unavailable" and "corrupt or not the pinned one" in probe["reason"]
    assert "unavailable" in finding.summary


def test_missing_head_is_named(astronaut: np.ndarray, tmp_path: Path) -> None:
    finding = AiGenerated(models=tmp_path).run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.OK
    assert finding.details["pixel_probe"] == {"status": "unavailable", "reason": "model 'ai_pixels' is not installed: ai_pixels.json is missing"}


def test_missing_encoder_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_encoder, "PACKAGE", "no_such_package_for_clip")
    with pytest.raises(ModelUnavailable, match="not installed: package no_such_package_for_clip is missing"):
        clip_encoder.encoder_path()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter, which training.common uses
def test_tiny_training_run_exports_a_head_with_a_line(tmp_path: Path) -> None:
    """``python -m training ai_pixels --size tiny``: a few images per group, the folds, the export."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data {SHARED_DATA} is absent")
    settings = RunSettings(SHARED_DATA, tmp_path / "work", tmp_path / "models", 0, "tiny")
    path = ai_pixels.train(settings)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["inputs"] == {"embedding": [1, 512]} and isinstance(card["line"], float)
    assert any("held out: GLID-3" in row["set"] for row in card["figures"])
    model = load_model("ai_pixels", tmp_path / "models")
    np.testing.assert_allclose(
        model.run(**reference_inputs(card["inputs"]))[0].ravel(), np.asarray(card["reference"]["outputs"][0], np.float32), atol=1e-4
    )
