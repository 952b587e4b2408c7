"""The resave method: whole-image evidence of re-saving (aligned, non-aligned, error level)."""

import io

import numpy as np
import pytest
from PIL import Image

from forensics.finding import Status
from forensics.image import load_image
from forensics.methods.resave import ResaveMethod
from tests.conftest import SHARED_DATA, jpeg_bytes, png_bytes

METHOD = ResaveMethod()
#: A Dresden Nikon D70s original whose own tables are close to IJG quality 59.
ORIGINAL = SHARED_DATA / "dresden_natural" / "authentic" / "natural" / "Nikon_D70s_0_21989.JPG"


@pytest.fixture(scope="module")
def original() -> bytes:
    if not ORIGINAL.exists():
        pytest.skip(f"reference data {ORIGINAL} is absent (it lives beside the repository as ../shared/data)")
    return ORIGINAL.read_bytes()


def _pixels(data: bytes) -> np.ndarray:
    """The decoded top-left 1024x1536 pixels (on the original 8x8 grid, to keep the test fast)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:1024, :1536]


def test_camera_original_scores_low(original: bytes) -> None:
    finding = METHOD.run(load_image(original))
    assert finding.status is Status.OK and finding.score is not None
    assert finding.details["statistic"] < 0.2 and finding.score < 10
    assert finding.label != "re-saved"


def test_resave_at_q75_scores_higher_and_dates_both_saves(original: bytes) -> None:
    before = METHOD.run(load_image(original))
    after = METHOD.run(load_image(jpeg_bytes(np.ascontiguousarray(_pixels(original)), 75)))
    assert after.details["statistic"] > before.details["statistic"] + 1.0
    assert after.score is not None and after.score > 90
    assert after.details["final_quality"] == {"quality": 75, "error": 0.0, "standard": True}
    primary = after.details["aligned_double_compression"]["estimated_primary_quality"]
    own = load_image(original).jpeg
    assert own is not None
    from forensics.jpeg_tables import estimate_quality

    assert abs(primary["quality"] - estimate_quality(own.table_for(0)).quality) <= 3
    assert after.details["statistic_parts"]["aligned"] > 1.0
    assert "first saved at about q" in after.summary and "then at q75" in after.summary


def test_resave_after_a_3_pixel_crop_is_nonaligned(original: bytes) -> None:
    cropped = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))[3:1027, 3:1539])
    finding = METHOD.run(load_image(jpeg_bytes(cropped, 75)))
    nadq = finding.details["nonaligned_double_compression"]
    assert nadq["detected"] and nadq["origin"] == [5, 5]
    assert finding.details["statistic_parts"]["nonaligned"] > 0.5
    assert "cropped or shifted" in finding.summary


def test_synthetic_double_compression_reports_both_qualities(astronaut: np.ndarray) -> None:
    twice = jpeg_bytes(np.asarray(Image.open(io.BytesIO(jpeg_bytes(astronaut, 60))).convert("RGB")), 90)
    finding = METHOD.run(load_image(twice))
    assert finding.details["aligned_double_compression"]["estimated_primary_quality"]["quality"] == 60
    assert finding.details["final_quality"]["quality"] == 90
    assert finding.label == "re-saved" and "first saved at about q60, then at q90" in finding.summary


def test_single_compression_scores_low(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(jpeg_bytes(astronaut, 90)))
    assert finding.status is Status.OK and finding.score is not None and finding.score < 10
    assert finding.details["statistic_parts"] == {"aligned": 0.0, "nonaligned": 0.0, "error_level": 0.0}


def test_png_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.NOT_APPLICABLE and finding.score is None
    assert "PNG" in finding.summary
