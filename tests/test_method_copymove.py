"""Copy-move detection finds clones (shifted, rotated) with their source and target, and stays quiet on originals."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from forensics import load_image
from forensics.evaluation import pixel_f1, roc_auc
from forensics.finding import Status
from forensics.methods import copymove
from forensics.methods.copymove import CopyMove

from .conftest import dataset, png_bytes

METHOD = CopyMove()


def clone(rgb: np.ndarray, src: tuple[int, int], dst: tuple[int, int], size: int, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Paste a ``size`` square from ``src`` (x, y) at ``dst``, optionally rotated; return image and mask of both."""
    out = rgb.copy()
    (sx, sy), (dx, dy) = src, dst
    patch = rgb[sy : sy + size, sx : sx + size]
    if angle:
        rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        patch = cv2.warpAffine(patch, rot, (size, size), borderMode=cv2.BORDER_REFLECT)
    out[dy : dy + size, dx : dx + size] = patch
    mask = np.zeros(rgb.shape[:2], bool)
    mask[sy : sy + size, sx : sx + size] = True
    mask[dy : dy + size, dx : dx + size] = True
    return out, mask


def test_original_photo_has_no_clone(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.OK
    assert finding.score < 50, finding.details


@pytest.mark.parametrize("angle", [0.0, 25.0])
def test_clone_is_found_with_source_and_target(astronaut: np.ndarray, angle: float) -> None:
    forged, mask = clone(astronaut, src=(300, 330), dst=(40, 380), size=96, angle=angle)
    finding = METHOD.run(load_image(png_bytes(forged)))
    assert finding.score >= 50, finding.details
    assert finding.details["clusters"]
    assert pixel_f1(finding.heatmap, mask) >= 0.5
    if angle:
        assert abs(abs(finding.details["clusters"][0]["rotation_deg"]) - angle) < 5


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_a_clone_compressed_after_cloning_still_matches_once_the_compression_noise_is_removed(astronaut: np.ndarray) -> None:
    """A 64 px clone shifted off the 8x8 grid, then saved at JPEG q75: each copy carries its own
    quantization noise, which alone leaves about a tenth of the clone's strong-match area; with the
    noise measured from the file's own table and removed, the copy matches almost as in the PNG."""
    forged, _ = clone(astronaut, src=(300, 330), dst=(43, 381), size=64)
    lossless = METHOD.run(load_image(png_bytes(forged)))
    compressed = METHOD.run(load_image(_jpeg(forged, 75)))
    assert compressed.score >= 50
    assert compressed.details["strong_match_fraction"] >= 0.5 * lossless.details["strong_match_fraction"], (compressed.details, lossless.details)
    assert compressed.details["clusters"][0]["fine_correlation"] >= 0.97
    original = METHOD.run(load_image(_jpeg(astronaut, 75)))
    assert original.score < 50, original.details


def test_a_small_clone_at_an_odd_shift_is_found_by_its_exact_duplicate_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 24 px patch of a 600 px photo copied 37 px away: too few keypoints for SIFT, and the block
    search at 512 px loses it (an odd shift does not survive the resampling); stored losslessly, its
    blocks are identical to their source's, which no two textured blocks of a photo are by chance."""
    coffee = data.coffee()
    forged, mask = clone(coffee, src=(540, 20), dst=(503, 57), size=24)
    finding = METHOD.run(load_image(png_bytes(forged)))
    assert finding.score >= 50, finding.details
    assert finding.details["clusters"][0]["kind"] == "exact"
    assert finding.details["clusters"][0]["shift_px"] in ([37.0, -37.0], [-37.0, 37.0])
    assert pixel_f1(finding.heatmap, mask) >= 0.5
    assert METHOD.run(load_image(png_bytes(coffee))).details["exact_block_pairs"] < copymove.EXACT_MIN_VOTES
    # lossy files are left out: quantization makes smooth blocks on the coding grid identical by itself
    assert "exact_block_pairs" not in METHOD.run(load_image(_jpeg(forged, 95))).details
    monkeypatch.setattr(copymove, "EXACT_MAX_PIXELS", 0)
    assert METHOD.run(load_image(png_bytes(forged))).score < 50


def test_a_resampled_clone_is_compared_with_its_source_resampled_as_an_editor_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """CoMoFoD 104: a clone enlarged 1.4 times. Resampling the source image with a cubic kernel, as the editor
    did, keeps the fine grain the two copies share; interpolating the residuals linearly smooths it,
    and the clone's evidence falls by about half (measured: statistic 90.8 against 47.2)."""
    (sample,) = [s for s in dataset("comofod_subset") if s.path.name == "104_F.png"]
    image = load_image(sample.path.read_bytes())
    cubic = METHOD.run(image).details
    warp = copymove._warp_residuals
    monkeypatch.setattr(copymove, "_warp_residuals", lambda gray, resid, fine, m, cubic: warp(gray, resid, fine, m, cubic=False))
    linear = METHOD.run(image).details
    assert abs(cubic["clusters"][0]["scale"] - 1.4) < 0.05
    assert cubic["clusters"][0]["fine_correlation"] >= linear["clusters"][0]["fine_correlation"] + 0.02, (cubic, linear)
    assert cubic["statistic"] >= 1.5 * linear["statistic"], (cubic["statistic"], linear["statistic"])


def test_a_quarter_turned_clone_is_compared_with_its_source_turned_exactly(astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch turned by 90 degrees is the same pixels, rearranged; RANSAC's estimate from keypoints
    is a fraction of a degree and of a pixel off, and resampling by it blurs the fine grain that
    the clone shares with its source. Taken as the exact quarter turn at a whole-pixel shift, the
    copy matches pixel for pixel (CoMoFoD 047_F: fine correlation 0.69 as estimated, 0.97 exact)."""
    forged = astronaut.copy()
    forged[380:476, 40:136] = np.rot90(astronaut[330:426, 300:396])
    exact = METHOD.run(load_image(png_bytes(forged)))
    top = exact.details["clusters"][0]
    assert exact.score >= 50 and abs(abs(top["rotation_deg"]) - 90) < 1e-6 and top["scale"] == 1.0, exact.details
    assert top["fine_correlation"] >= 0.97, top
    monkeypatch.setattr(copymove, "_snapped", lambda cand, whole_pixels: cand)
    estimated = METHOD.run(load_image(png_bytes(forged)))
    assert estimated.details["clusters"][0]["fine_correlation"] < top["fine_correlation"] - 0.05, estimated.details
    assert estimated.details["statistic"] < 0.5 * exact.details["statistic"], (estimated.details, exact.details)


def test_comofod_quarter_turned_clone_is_found() -> None:
    (sample,) = [s for s in dataset("comofod_subset") if s.path.name == "047_F.png"]
    finding = METHOD.run(load_image(sample.path.read_bytes()))
    assert finding.score >= 50 and finding.details["clusters"][0]["fine_correlation"] >= 0.95, finding.details
    assert pixel_f1(finding.heatmap, sample.mask()) >= 0.5


def test_a_transform_found_at_another_size_maps_pixel_centres() -> None:
    """cv2.resize puts pixel centres at integers, so a point p of the working image is p * r + (r - 1) / 2
    at r times its size. A quarter turn found at 1.5 times the size must map the same pixel centres
    once brought back; scaling the translation alone is a third of a pixel off."""
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    shift = np.array([449.0, 300.0])
    src = np.array([[10.0, 20.0], [200.0, 50.0], [120.0, 300.0], [40.0, 170.0]])
    dst = src @ rotation.T + shift
    ratio = 1.5
    big_src, big_dst = (src + 0.5) * ratio - 0.5, (dst + 0.5) * ratio - 0.5
    big_shift = (big_dst - big_src @ rotation.T).mean(axis=0)
    found = copymove._Candidate("keypoint", np.hstack([rotation, big_shift[:, None]]), big_src, big_dst)
    back = copymove._rescaled(found, 1 / ratio)
    np.testing.assert_allclose(back.matrix[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(back.src, src, atol=1e-9)
    np.testing.assert_allclose(back.dst, dst, atol=1e-9)


def test_compression_noise_is_measured_only_for_jpegs_near_full_resolution(astronaut: np.ndarray) -> None:
    luma = load_image(_jpeg(astronaut, 75))
    noise = copymove._compression_noise(np.asarray(luma.luma, np.float32), luma.jpeg, 1.0)
    assert noise is not None and noise.resid.shape == luma.luma.shape and float(noise.resid.mean()) > 0
    assert copymove._compression_noise(np.asarray(luma.luma, np.float32), luma.jpeg, 0.25) is None
    png = load_image(png_bytes(astronaut))
    assert copymove._compression_noise(np.asarray(png.luma, np.float32), png.jpeg, 1.0) is None


def test_too_small_image_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut[:40, :40])))
    assert finding.status is Status.NOT_APPLICABLE and finding.score is None


def test_comofod_detection_and_localisation() -> None:
    """CoMoFoD PNG pairs: measured AUC 0.87 and mean pixel F1 0.65 on all 116; asserted with a margin on 60."""
    samples = [s for s in dataset("comofod_subset") if s.suffix == ".png"][:60]
    scores = {True: [], False: []}
    f1s = []
    for s in samples:
        finding = METHOD.run(load_image(s.path.read_bytes()))
        scores[s.positive].append(finding.details["statistic"])
        if s.positive:
            f1s.append(pixel_f1(finding.heatmap, s.mask()))
    assert roc_auc(scores[True], scores[False]) >= 0.75
    assert float(np.mean(f1s)) >= 0.5


def test_g2nn_pairs_equal_a_full_ranking_of_every_descriptor(astronaut: np.ndarray) -> None:
    """The g2NN search ranks all k neighbours only for descriptors whose first neighbour passes the
    ratio test; it must accept exactly the pairs a plain full sort of every row accepts."""
    forged, _ = clone(astronaut, (60, 60), (300, 280), 120)
    gray = cv2.cvtColor(forged, cv2.COLOR_RGB2GRAY)
    _, desc = cv2.SIFT_create(nfeatures=3000, contrastThreshold=copymove.SIFT_CONTRAST).detectAndCompute(gray, None)
    k = copymove.G2NN_NEIGHBOURS
    d = np.sqrt(np.maximum(((desc[:, None, :].astype(np.float64) - desc[None, :, :]) ** 2).sum(-1), 0.0))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d, order, axis=1)
    accepted = np.cumprod(dist[:, :-1] < copymove.G2NN_RATIO * np.maximum(dist[:, 1:], 1e-6), axis=1).astype(bool)
    rows, cols = np.nonzero(accepted)
    expected = set(zip(rows.tolist(), order[rows, cols].tolist(), strict=True))
    a, b = copymove._g2nn(desc, k)
    assert len(expected) > 50, "the clone gives matches to compare"
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == expected


def _run(name: str, relpath: str) -> dict:
    (sample,) = [s for s in dataset(name) if s.path.as_posix().endswith(relpath)]
    finding = METHOD.run(load_image(sample.path.read_bytes()))
    assert finding.status is Status.OK
    return finding


@pytest.mark.parametrize(
    ("name", "relpath"),
    [
        ("recapture_phone", "authentic/akshan/real_040.jpg"),  # the straight edge of a rotated photo's padding (1.4: 36.5)
        ("recapture_phone", "authentic/akshan/real_031.jpg"),  # a laptop keyboard's rows of keys (1.4: 14.2)
        ("dresden_natural", "Nikon_D70_1_20749.JPG"),  # a long fluorescent tube, matching itself along its length (1.4: 14.0)
    ],
)
def test_a_repeated_pattern_in_a_camera_original_is_not_a_clone(name: str, relpath: str) -> None:
    """Genuine photos that 1.4 scored 100: the verified pair's source also matches the content one
    shift further back (a lattice, a row of keys, a line along itself), which a single pasted clone
    never does; the pair is reported as periodic, with its lattice shift, and does not count."""
    finding = _run(name, relpath)
    assert finding.score < 50, finding.details
    periodic = [c for c in finding.details["clusters"] if c["periodic"]]
    assert periodic and all(c["discarded"] == "periodic" and c["lattice_shift_px"] == c["shift_px"] for c in periodic)
    assert max(c["echo_back"] for c in periodic) >= copymove.PERIODIC_ECHO
    assert "repeated pattern" in finding.summary


def test_pixel_exact_repeats_in_a_noise_free_drawing_are_not_a_clone() -> None:
    """A drawing saved as TIFF (exif_samples_ianare Picoawards, 1.4: 60.2) repeats its circles and
    labels pixel for pixel, with no echo one shift on; but around them the luma is exactly flat (no
    sensor noise), so the repeat is by construction and is set aside as synthetic."""
    finding = _run("exif_samples_ianare", "tiff/Picoawards.tiff")
    assert finding.score < 50, finding.details
    assert finding.details["discarded_synthetic"] >= 1
    assert all(c["discarded"] is not None for c in finding.details["clusters"])


@pytest.mark.parametrize(
    ("name", "relpath"),
    [("comofod_subset", "tampered/040_F.png"), ("cvip_copymove", "tampered/D0_im1_t.png"), ("noso_copymove", "tampered/04_mod.png")],
)
def test_true_clones_have_no_echo_and_are_still_found(name: str, relpath: str) -> None:
    """A clone pastes one region once: beyond either copy lies unrelated content, so the echo stays
    near 0 (at most 0.11 measured on the three sets' clones) and the pair counts in full."""
    (sample,) = [s for s in dataset(name) if s.path.as_posix().endswith(relpath)]
    finding = METHOD.run(load_image(sample.path.read_bytes()))
    assert finding.score >= 50, finding.details
    top = finding.details["clusters"][0]
    assert not top["periodic"] and top["discarded"] is None and top["echo_back"] < 0.15 and top["echo_forward"] < 0.15
    assert pixel_f1(finding.heatmap, sample.mask()) >= 0.6


def test_a_tiled_texture_is_periodic_but_a_single_clone_in_it_is_not() -> None:
    """Synthetic check of the echo: a noisy tile printed five times in a row (a pattern) versus one
    patch of noise pasted once."""
    rng = np.random.default_rng(7)
    background = np.clip(rng.normal(128, 30, (480, 640)), 0, 255).astype(np.uint8)
    tile = np.clip(rng.normal(128, 40, (60, 60)), 0, 255).astype(np.uint8)
    tiled = background.copy()
    for k in range(5):
        tiled[200:260, 40 + 110 * k : 100 + 110 * k] = tile
    pattern = METHOD.run(load_image(png_bytes(np.repeat(tiled[..., None], 3, axis=2))))
    assert pattern.score < 50, pattern.details
    assert pattern.details["discarded_periodic"] >= 1
    cloned = background.copy()
    cloned[300:380, 400:480] = background[60:140, 100:180]
    single = METHOD.run(load_image(png_bytes(np.repeat(cloned[..., None], 3, axis=2))))
    assert single.score >= 50, single.details
    assert single.details["discarded_periodic"] == 0


@pytest.mark.parametrize("relpath", ["authentic/005_O.png", "authentic/041_O.png"])
def test_the_far_pair_of_a_roughly_even_row_of_identical_objects_is_part_of_the_row(relpath: str) -> None:
    """Three identical beer coasters hung in a row (CoMoFoD originals, 1.5: statistic 1.4 and 3.1):
    neighbours echo one step on and are periodic; the first and third, a step from 2t and with the
    first inside the row's repeated area, are the row's further multiple, not a clone."""
    finding = _run("comofod_subset", relpath)
    assert finding.score < 50, finding.details
    far = [c for c in finding.details["clusters"] if c["periodic"] and c["lattice_shift_px"] != c["shift_px"]]
    assert far and all(c["discarded"] == "periodic" for c in far)


def test_a_roughly_even_row_of_look_alikes_is_periodic_but_a_clone_of_one_pasted_off_the_row_is_not() -> None:
    """Three copies of one printed object, each with its own sensor noise, 110 and 114 px apart: the
    far pair is a step from 2t and belongs to the row; an exact copy of the first object pasted
    below the row, at no multiple of its step, is a clone."""
    rng = np.random.default_rng(11)
    background = rng.normal(128, 30, (480, 640)).astype(np.float32)
    printed = cv2.GaussianBlur(rng.normal(0, 1, (60, 60)).astype(np.float32), (0, 0), 2) * 400 + 128
    row = background.copy()
    for x in (40, 150, 264):
        row[100:160, x : x + 60] = printed + rng.normal(0, 3, (60, 60))
    row = np.clip(row, 0, 255).astype(np.uint8)
    pattern = METHOD.run(load_image(png_bytes(np.repeat(row[..., None], 3, axis=2))))
    assert pattern.score < 50, pattern.details
    assert any(c["periodic"] and c["lattice_shift_px"] != c["shift_px"] for c in pattern.details["clusters"])
    cloned = row.copy()
    cloned[330:390, 470:530] = row[100:160, 40:100]
    found = METHOD.run(load_image(png_bytes(np.repeat(cloned[..., None], 3, axis=2))))
    assert found.score >= 50, found.details


def test_parallel_straight_edges_match_a_few_pixels_along_and_are_not_a_clone() -> None:
    """The slats of an air conditioner seen at an angle (recapture_phone real_007, 1.6: statistic
    1.7): one slat's edge matches the next, but the spacing changes along the grille, so there is no
    echo; the match still holds with the transform moved 3 px along the slats, which a
    two-dimensional copy never does, and the pair is set aside with the repeated patterns."""
    finding = _run("recapture_phone", "authentic/akshan/real_007.jpg")
    assert finding.score < 50, finding.details
    (pair,) = finding.details["clusters"]
    assert pair["slide"] >= copymove.SLIDE_SHARE and pair["fine_correlation"] < copymove.SLIDE_MAX_FINE
    assert pair["discarded"] == "periodic" and "repeated pattern" in finding.summary
