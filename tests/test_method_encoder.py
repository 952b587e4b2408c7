"""The encoder method: camera originals, software re-saves and the leave-one-dataset-out recomputation."""

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from forensics import load_image
from forensics.finding import Finding, Status
from forensics.methods.encoder import EncoderMethod, assess, statistic_excluding

from .conftest import REPO, SHARED_DATA, png_bytes

METHOD = EncoderMethod()
DRESDEN_NIKON = "dresden_natural/authentic/natural/Nikon_D70_0_19445.JPG"
IPHONE = "exif_samples_ianare/jpg/hdr/iphone_hdr_NO.jpg"
PHOTOSHOP = "exif_samples_ianare/jpg/orientation/landscape_1.jpg"


def reference(relative: str) -> bytes:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"reference image {path} is absent (it lives beside the repository as ../shared/data)")
    return path.read_bytes()


def examine(data: bytes, filename: str = "photo.jpg") -> Finding:
    return METHOD.run(load_image(data, filename=filename))


def pillow_resave(data: bytes, quality: int) -> bytes:
    """What an editor built on libjpeg writes: the same pixels and EXIF, IJG tables at ``quality``."""
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, exif=image.info["exif"])
    return out.getvalue()


def test_camera_original_is_a_camera_encoder_and_scores_nothing() -> None:
    finding = examine(reference(DRESDEN_NIKON))
    assert finding.status is Status.OK
    assert finding.details["assessment"] == "camera"
    assert finding.label == "camera encoder (nikon)"
    assert finding.details["statistic"] == 0.0 and finding.score < 50
    assert finding.details["exif"]["make"] == "NIKON CORPORATION"
    assert finding.details["ijg"]["standard"] is False
    assert {e["family"] for e in finding.details["matched_entries"]} == {"camera"}


def test_pillow_resave_under_a_known_make_is_a_signature_mismatch() -> None:
    finding = examine(pillow_resave(reference(IPHONE), 75))
    assert finding.details["exif"]["make"] == "Apple"
    assert finding.details["ijg"]["standard"] is True and finding.details["ijg"]["quality"] == 75
    assert finding.details["ijg"]["chroma"]["quality"] == 75
    assert finding.details["assessment"] == "signature_mismatch"
    assert "IJG libjpeg q75" in finding.details["family"]
    assert finding.details["points"] == {"editor_tables": 60.0, "camera_signature_mismatch": 30.0}
    assert finding.score >= 50


def test_pillow_resave_under_a_make_that_writes_ijg_tables_is_only_ambiguous() -> None:
    """Nikon firmware writes IJG tables at many qualities (COOLPIX P6000, D200), so IJG under Nikon proves nothing."""
    finding = examine(pillow_resave(reference(DRESDEN_NIKON), 75))
    assert finding.details["assessment"].startswith("ambiguous")
    assert finding.label == "ambiguous encoder (camera or IJG libjpeg q75)"
    assert finding.score < 50


def test_photoshop_file_is_the_photoshop_family() -> None:
    finding = examine(reference(PHOTOSHOP))
    assert finding.details["assessment"] == "editor"
    assert finding.details["family"] == "Adobe Photoshop"
    assert finding.label == "saved by editing software (Adobe Photoshop)"
    assert finding.score >= 50
    entry = next(e for e in finding.details["matched_entries"] if e["name"] == "Adobe Photoshop")
    assert entry["files"] >= 2 and entry["datasets"] == {"exif_samples_ianare": entry["files"]}


def test_statistic_excluding_the_only_dataset_of_the_evidence() -> None:
    camera = examine(reference(DRESDEN_NIKON)).details
    assert assess(camera, {"dresden_natural"}).code == "unknown"
    assert statistic_excluding(camera, {"dresden_natural"}) == 0.0
    assert statistic_excluding(camera, {"casia2_samples"}) == camera["statistic"]

    resave = examine(pillow_resave(reference(IPHONE), 75)).details
    assert statistic_excluding(resave, set()) == resave["statistic"] == 90.0
    # Apple is known from exif_samples_ianare alone: without it the make is unknown, and IJG
    # tables under an unknown camera make are no evidence.
    assert assess(resave, {"exif_samples_ianare"}).code == "ambiguous_ijg_camera_make"
    assert statistic_excluding(resave, {"exif_samples_ianare"}) == 10.0
    assert METHOD.statistic_excluding(resave, frozenset({"exif_samples_ianare"})) == 10.0

    photoshop = examine(reference(PHOTOSHOP)).details
    assert assess(photoshop, {"exif_samples_ianare"}).code == "unknown"


def test_other_formats_and_unreadable_tables_are_not_applicable(astronaut) -> None:
    assert examine(png_bytes(astronaut), "a.png").status is Status.NOT_APPLICABLE
    image = load_image(reference(DRESDEN_NIKON), filename="nikon.jpg")
    finding = METHOD.run(replace(image, jpeg=None))
    assert finding.status is Status.NOT_APPLICABLE
    assert "quantization tables" in finding.summary


def test_shipped_collection_matches_a_rebuild() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data {SHARED_DATA} is absent (it lives beside the repository as ../shared/data)")
    script = Path(REPO, "scripts", "build_qtables.py")
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
