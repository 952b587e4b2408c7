"""raw_consistency: a simulated sensor's raw against a raw made from a JPEG, and a preview that departs from its raw."""

import io

import numpy as np
import pytest
from PIL import Image

from forensics.finding import Status
from forensics.formats import ImageFormat
from forensics.image import load_image
from forensics.methods.raw_consistency import RawConsistency, _isotonic
from tests.raw_support import BLACK, WHITE, _mosaic_of, dng_bytes, raw_from_jpeg, render_preview, simulated_sensor

#: The least gap between the highest genuine and the lowest forged statistic.
MARGIN = 0.3
METHOD = RawConsistency()


@pytest.fixture(scope="module")
def genuine() -> list[float]:
    return [METHOD.run(load_image(simulated_sensor(512, 768, seed=s))).details["statistic"] for s in (0, 1)]


@pytest.fixture(scope="module")
def forged() -> list[float]:
    return [METHOD.run(load_image(raw_from_jpeg(512, 768, seed=s))).details["statistic"] for s in (0, 1)]


def test_genuine_and_jpeg_made_raws_are_told_apart(genuine: list[float], forged: list[float]) -> None:
    assert max(genuine) + MARGIN < min(forged), (genuine, forged)
    assert max(genuine) < METHOD.default_logistic.center < min(forged)


def test_forged_raw_names_its_cues() -> None:
    finding = METHOD.run(load_image(raw_from_jpeg(512, 768, seed=2)))
    assert finding.status is Status.OK and finding.label == "inconsistent"
    terms = finding.details["terms"]
    assert terms["code_gaps"] > 0.9  # 8-bit values scaled up: most 14-bit codes empty
    assert terms["green_correlation"] > 0.5  # the greens come from one interpolated channel
    assert finding.heatmap is not None


def test_genuine_raw_reads_as_sensor_data() -> None:
    finding = METHOD.run(load_image(simulated_sensor(512, 768, seed=4)))
    measures = finding.details["measures"]
    assert finding.label == "consistent"
    assert measures["code_gaps"]["empty_share"] < 0.05
    assert abs(measures["green_correlation"]["residual_correlation"]) < 0.1
    assert measures["shot_noise"]["growth"] > 3  # Poisson noise: variance rises with the mean
    assert measures["shot_noise"]["slope"] > 0


def test_an_edited_preview_departs_from_its_raw() -> None:
    """A patch pasted into the preview alone (the raw untouched) is found where it is."""
    mosaic = _mosaic_of(simulated_sensor(512, 768, seed=5)).copy()
    preview, size = render_preview(mosaic, BLACK, WHITE)
    rgb = np.asarray(Image.open(io.BytesIO(preview))).copy()
    rgb[100:160, 200:280] = rgb[20:80, 20:100][::-1, ::-1]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    finding = METHOD.run(load_image(dng_bytes(mosaic, buf.getvalue(), size)))
    assert finding.details["terms"]["preview_mismatch"] > 0.5
    heat = finding.heatmap
    assert heat is not None
    inside = heat[100 * heat.shape[0] // 256 : 160 * heat.shape[0] // 256, 200 * heat.shape[1] // 384 : 280 * heat.shape[1] // 384]
    assert inside.mean() > 3 * heat.mean() * 0.5 and inside.mean() > heat[: heat.shape[0] // 4, -heat.shape[1] // 4 :].mean() * 2


def test_applies_only_to_raw() -> None:
    assert METHOD.applies_to == frozenset({ImageFormat.RAW})
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    assert METHOD.run(load_image(buf.getvalue())).status is Status.NOT_APPLICABLE


def test_isotonic_is_monotone_and_least_squares() -> None:
    y = np.array([1.0, 3.0, 2.0, 4.0, 3.5, 5.0])
    fitted = _isotonic(y, np.ones_like(y))
    assert np.all(np.diff(fitted) >= 0)
    np.testing.assert_allclose(fitted, [1.0, 2.5, 2.5, 3.75, 3.75, 5.0])
