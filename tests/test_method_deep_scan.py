"""Deep scan: the learned localizer finds a splice between two cameras' photos, runs at three
sensitivities, says when an image is too small, and fails alone when its model is damaged."""

import itertools
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensics.finding import Status
from forensics.image import load_image
from forensics.learn.block_features import ADQ_NEUTRAL, CHANNELS, block_features, pool_factor, pooled
from forensics.learn.runtime import MODELS_DIR, card_path
from forensics.methods.deep_scan import FOLDS_ENV, MODEL, DeepScan, _describe, fold_name, image_statistic
from forensics.options import AnalysisOptions, Sensitivity
from forensics.pipeline import analyze
from forensics.synth.sources import load_rgb

from .conftest import REPO, dataset, jpeg_bytes

SCAN = DeepScan()
#: The fold models scripts/calibrate.py scores held-out folds with.
FOLDS = REPO / "training" / "folds" / "deep_scan"


@pytest.fixture(scope="module")
def splice() -> tuple[bytes, np.ndarray, bytes]:
    """A NoSo camera photo (JPEG content stored as PNG) with a 160x200 px piece of a CVIP photo
    (lossless) pasted in, saved at q90; and the same crop saved alike, untouched. Neither set
    was used to train the model."""
    host_sample = next(s for s in dataset("noso_copymove") if s.path.name == "03.png")
    donor_sample = next(s for s in dataset("cvip_copymove") if s.label == "authentic")
    host = np.ascontiguousarray(load_rgb(host_sample.path)[:512, :768])
    donor = load_rgb(donor_sample.path)
    edited = host.copy()
    edited[176:336, 296:496] = donor[300:460, 400:600]
    mask = np.zeros(host.shape[:2], bool)
    mask[176:336, 296:496] = True
    return jpeg_bytes(edited, 90), mask, jpeg_bytes(host, 90)


def test_splice_between_cameras_is_localized(splice) -> None:
    data, mask, _ = splice
    finding = SCAN.run(load_image(data))
    assert finding.status is Status.OK
    heat = cv2.resize(finding.heatmap, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST)
    assert float(heat[mask].mean()) > 3 * float(heat[~mask].mean())
    assert finding.details["statistic"] == pytest.approx(image_statistic(finding.heatmap), abs=1e-6)


def test_untouched_crop_scores_below_the_splice(splice) -> None:
    data, _, untouched = splice
    assert SCAN.run(load_image(untouched)).details["statistic"] < SCAN.run(load_image(data)).details["statistic"]


def test_a_flagged_scan_says_what_else_stands_out_to_it() -> None:
    """A salient subject against a plain background also lights the map (CASIA's originals): the
    summary of a flagged scan says so; an unflagged one has nothing to qualify."""
    flagged_label, flagged = _describe(80.0, 0.05, Sensitivity.DEFAULT)
    quiet_label, quiet = _describe(20.0, 0.0, Sensitivity.DEFAULT)
    assert flagged_label == "suspicious regions" and "sharp subject against a plain or defocused background" in flagged
    assert quiet_label == "no suspicious region" and "sharp subject" not in quiet


def test_sensitivities_are_recorded_and_differ_in_passes(splice) -> None:
    image = load_image(splice[0])
    results = {s: SCAN.run(image, AnalysisOptions(s)) for s in Sensitivity}
    assert {s: r.details["passes"] for s, r in results.items()} == {Sensitivity.FAST: 1, Sensitivity.DEFAULT: 1, Sensitivity.THOROUGH: 8}
    assert all(r.details["sensitivity"] == s.value for s, r in results.items())
    assert all(r.heatmap.shape == results[Sensitivity.DEFAULT].heatmap.shape for r in results.values())
    # thorough averages eight views of the same map: close to, yet not the same as, one pass
    assert not np.array_equal(results[Sensitivity.THOROUGH].heatmap, results[Sensitivity.DEFAULT].heatmap)


def test_fast_leaves_the_history_channel_neutral(splice) -> None:
    image = load_image(splice[0])
    fast = block_features(image, with_history=False).values
    assert np.all(fast[CHANNELS.index("adq")] == ADQ_NEUTRAL) and np.all(fast[CHANNELS.index("adq_valid")] == 0)


def test_report_records_the_sensitivity(splice) -> None:
    report = analyze(splice[0], filename="splice.jpg", options=AnalysisOptions(Sensitivity.FAST))
    assert report.to_dict()["options"] == {"sensitivity": "fast"}
    deep = next(f for f in report.findings if f.method == "deep_scan")
    assert deep.details["sensitivity"] == "fast"


def test_too_small_image_is_not_applicable() -> None:
    finding = SCAN.run(load_image(jpeg_bytes(np.full((40, 300, 3), 128, np.uint8))))
    assert finding.status is Status.NOT_APPLICABLE
    assert "at least 64 px" in finding.summary


def test_damaged_model_fails_the_method_alone(tmp_path: Path, splice) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("deep_scan.onnx", "deep_scan.json"):
        shutil.copy(MODELS_DIR / name, folder / name)
    (folder / "deep_scan.onnx").write_bytes((folder / "deep_scan.onnx").read_bytes()[:-100])
    scan = DeepScan()
    scan.models_dir = folder
    finding = scan.run(load_image(splice[0]))
    assert finding.status is Status.ERROR
    assert "deep scan model is unavailable" in finding.summary and "corrupt" in finding.summary


def test_held_out_statistic_needs_the_fold_model() -> None:
    details = {"statistic": 0.4, "fold_statistics": {"dresden_natural": 0.2, "dresden_natural+recapture_phone": 0.3}}
    assert SCAN.statistic_excluding(details, frozenset({"casia2_samples"})) == 0.4
    assert SCAN.statistic_excluding(details, frozenset({"dresden_natural", "casia2_samples"})) == 0.2
    assert SCAN.statistic_excluding(details, frozenset({"recapture_phone", "dresden_natural"})) == 0.3
    with pytest.raises(ValueError, match="fold models"):
        SCAN.statistic_excluding(details, frozenset({"recapture_phone"}))


def test_committed_fold_models_cover_every_held_out_fold(splice: tuple[bytes, np.ndarray, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/calibrate.py scores a held-out training source with a network that never saw it, one
    or two sources out (the nested method selection): each such model is committed, of the
    shipped version, trained without exactly what its folder names, and runs."""
    shipped = json.loads(card_path(MODEL).read_text())
    sources = shipped["data_sources"]
    needed = {fold_name(set(c)) for k in (1, 2) for c in itertools.combinations(sources, k)}
    assert {p.name for p in FOLDS.iterdir() if p.is_dir()} == needed
    for name in needed:
        card = json.loads(card_path(MODEL, FOLDS / name).read_text())
        assert card["version"] == shipped["version"] and fold_name(set(card["excluded"])) == name
        assert not set(card["excluded"]) & set(card["data_sources"])
    monkeypatch.setenv(FOLDS_ENV, str(FOLDS))
    folds = DeepScan().run(load_image(splice[0])).details["fold_statistics"]
    assert set(folds) == needed and all(0.0 <= v <= 1.0 for v in folds.values())


def test_pooling_averages_whole_cells() -> None:
    values = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    out = pooled(values, 2)
    assert out.shape == (2, 2, 3)
    assert out[1, 1, 2] == pytest.approx(values[1, 2:4, 4:6].mean())
    assert pool_factor(250, 376) == 2 and pool_factor(100, 100) == 1 and pool_factor(750, 500) == 3


def test_large_photo_is_scanned_on_pooled_cells_unless_thorough() -> None:
    sample = next(s for s in dataset("dresden_natural") if s.label == "authentic")
    image = load_image(sample.path.read_bytes())
    default = SCAN.run(image)
    thorough = SCAN.run(image, AnalysisOptions(Sensitivity.THOROUGH))
    assert default.details["cell_pixels"] == 16 and thorough.details["cell_pixels"] == 8
    assert default.heatmap.shape == (image.height // 16, image.width // 16)
    assert thorough.heatmap.shape == (image.height // 8, image.width // 8)
