"""The jpeg method: tables, blocking grid, and the local claim (a region with a different compression history)."""

import io

import numpy as np
import pytest
from PIL import Image

from forensics.finding import Status
from forensics.image import load_image
from forensics.jpeg_tables import ANNEX_K_LUMINANCE, estimate_quality, ijg_table
from forensics.methods.jpeg import JpegMethod
from tests.conftest import dataset, jpeg_bytes, png_bytes

METHOD = JpegMethod()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 97])
def test_quality_estimate_is_exact_for_ijg_files(astronaut: np.ndarray, quality: int) -> None:
    jpeg = load_image(jpeg_bytes(astronaut, quality)).jpeg
    assert jpeg is not None
    luma = estimate_quality(jpeg.table_for(0))
    chroma = estimate_quality(jpeg.table_for(1), chroma=True)
    assert (luma.quality, luma.standard, luma.error) == (quality, True, 0.0)
    assert (chroma.quality, chroma.standard) == (quality, True)


def test_custom_table_is_not_standard() -> None:
    table = ijg_table(85).astype(np.int64)
    table[3, 4] += 3
    estimate = estimate_quality(table)
    assert not estimate.standard
    assert abs(estimate.quality - 85) <= 1 and 0 < estimate.error < 0.1
    assert ijg_table(50).tolist() == ANNEX_K_LUMINANCE.tolist()


def test_single_compression_scores_low(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(jpeg_bytes(astronaut, 90)))
    assert finding.status is Status.OK
    assert finding.score is not None and finding.score < 20
    assert finding.details["tables"]["estimated_quality"] == 90
    assert finding.details["grid"]["origin"] == [0, 0]


def test_uniform_double_compression_is_reported_but_not_scored(astronaut: np.ndarray) -> None:
    """A whole image re-saved is the resave method's claim: here it is found and reported,
    but with no region lacking it, the local statistic stays low."""
    twice = jpeg_bytes(_decoded(jpeg_bytes(astronaut, 60)), 90)
    finding = METHOD.run(load_image(twice))
    dq = finding.details["double_compression"]
    assert dq["double_compressed"] and dq["estimated_primary_quality"]["quality"] == 60
    assert dq["frequencies_double_quantized"] >= 10
    # the primary steps estimated for the first AC frequencies are those of quality 60
    primary = {tuple(e["position"]): e["q1"] for e in dq["primary_steps"]}
    q60 = ijg_table(60)
    assert sum(primary[rc] == q60[rc] for rc in [(0, 1), (1, 0), (2, 0), (1, 1), (0, 2)]) >= 4
    assert finding.label == "consistent history"
    assert finding.score is not None and finding.score < 20


def test_splice_lacks_double_compression_in_heatmap(astronaut: np.ndarray) -> None:
    pixels = _decoded(jpeg_bytes(astronaut, 60)).copy()
    pixels[128:256, 128:256] = astronaut[131:259, 133:261]  # never compressed, off the grid
    finding = METHOD.run(load_image(jpeg_bytes(pixels, 90)))
    assert finding.heatmap is not None and finding.heatmap.shape == (64, 64)
    inside = finding.heatmap[16:32, 16:32]
    outside = np.delete(finding.heatmap.ravel(), (np.arange(16, 32)[:, None] * 64 + np.arange(16, 32)).ravel())
    assert inside.mean() > 0.8 and outside.mean() < 0.1
    # a 128x128 region is 6 % of the blocks: the map's bimodality (share times gap) stays small
    assert 0.0 < finding.details["statistic_parts"]["map_inconsistency"] < 0.2


def test_crop_after_compression_is_not_a_local_claim(astronaut: np.ndarray) -> None:
    """Cropped and re-saved (non-aligned double compression) is a whole-image claim, left to resave."""
    cropped = np.ascontiguousarray(_decoded(jpeg_bytes(astronaut, 50))[3:, 5:])
    finding = METHOD.run(load_image(jpeg_bytes(cropped, 90)))
    assert finding.details["grid"]["origin"] == [5, 3]
    assert "nonaligned_double_compression" not in finding.details


def test_never_compressed_png_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.NOT_APPLICABLE and finding.score is None


def test_decoded_jpeg_saved_as_png_recovers_steps_and_stays_low() -> None:
    from skimage import data

    pixels = _decoded(jpeg_bytes(data.chelsea(), 75))
    finding = METHOD.run(load_image(png_bytes(pixels)))
    assert finding.status is Status.OK and finding.score is not None and finding.score < 20
    traces = finding.details["jpeg_traces"]
    assert traces["origin"] == [0, 0]
    q75 = ijg_table(75)
    steps = traces["recovered_steps"]
    assert len(steps) >= 10
    assert all(q == q75[int(k[0]), int(k[2])] for k, q in steps.items())


def test_off_grid_copy_in_decoded_jpeg_png_is_localised() -> None:
    from skimage import data

    pixels = _decoded(jpeg_bytes(data.chelsea(), 75)).copy()  # 300x451
    pixels[100:196, 200:296] = pixels[45:141, 27:123]  # copy-move by (55, 173): off the 8x8 grid
    finding = METHOD.run(load_image(png_bytes(pixels)))
    assert finding.status is Status.OK and finding.score is not None and finding.score > 80
    heat = finding.heatmap
    assert heat is not None
    inside = heat[13:24, 26:36].mean()
    outside = np.concatenate([heat[:10].ravel(), heat[28:].ravel()]).mean()
    assert inside > 0.6 and outside < 0.1


def test_casia2_tiff_traces_localise_splices() -> None:
    """CASIA v2 tampered TIFFs are decoded JPEGs: measured 10/13 applicable, 8 above 50,
    mean pixel AUC 0.92; the authentic JPEGs decoded to PNG all stay below 50."""
    applicable, above, pixel_aucs = 0, 0, []
    samples = dataset("casia2_samples")
    for sample in samples:
        if sample.suffix != ".tif":
            continue
        finding = METHOD.run(load_image(sample.path.read_bytes()))
        if finding.status is not Status.OK:
            continue
        applicable += 1
        above += finding.score is not None and finding.score >= 50
        mask = sample.mask()
        if mask is not None and finding.heatmap is not None:
            oy, ox = finding.details["jpeg_traces"]["origin"]
            heat = np.full(mask.shape, 0.5, np.float32)
            up = np.kron(finding.heatmap, np.ones((8, 8), np.float32))[: mask.shape[0] - oy, : mask.shape[1] - ox]
            heat[oy : oy + up.shape[0], ox : ox + up.shape[1]] = up
            pixel_aucs.append(_auc_large(heat[mask], heat[~mask]))
    assert applicable >= 9 and above >= 6
    assert np.mean(pixel_aucs) >= 0.85
    for sample in samples:
        if sample.label == "authentic":
            pixels = np.asarray(Image.open(sample.path).convert("RGB"))
            finding = METHOD.run(load_image(png_bytes(pixels)))
            assert finding.status is Status.OK and finding.score is not None and finding.score < 50


def _auc_large(pos: np.ndarray, neg: np.ndarray) -> float:
    pos = np.sort(pos)
    lo, hi = np.searchsorted(pos, neg, side="left"), np.searchsorted(pos, neg, side="right")
    return float(((pos.size - hi) + 0.5 * (hi - lo)).sum() / (pos.size * neg.size))


def test_casia2_same_format_jpeg_auc() -> None:
    """Tampered vs authentic CASIA v2 JPEGs (measured AUC 0.94, 1/10 authentic above 50)."""
    pos, neg = [], []
    for sample in dataset("casia2_samples"):
        if sample.suffix != ".jpg":
            continue
        finding = METHOD.run(load_image(sample.path.read_bytes()))
        assert finding.status is Status.OK
        (pos if sample.positive else neg).append(finding.details["statistic"])
    assert len(pos) >= 10 and len(neg) >= 8
    assert _auc(pos, neg) >= 0.85
    assert np.mean(np.asarray(neg) > METHOD.logistic.center) <= 0.2
