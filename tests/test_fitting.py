"""The calibration fit cannot flatter: held-out rows are scored by models that never saw their dataset."""

import numpy as np
import pytest

from forensics import fitting
from forensics.dataset import source_group
from forensics.fitting import Row

LIMIT = lambda _dataset: 0.05  # noqa: E731


def _rows(seed: int = 0) -> list[Row]:
    """Three labelled datasets where `copymove` separates the classes and `noise` is chance,
    plus a set of genuine photos and generated images made from dataset "a"."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, n in (("a", 30), ("b", 30), ("c", 30)):
        for i in range(n):
            positive = i % 2 == 1
            stats = {"copymove": float(rng.normal(3.0 if positive else 0.0, 1.0)), "noise": float(rng.normal(0.0, 1.0))}
            rows.append(Row(f"{dataset}/{i}.png", dataset, dataset, f"{dataset}{i // 2}", "tampered" if positive else "authentic", "", stats))
    for i in range(40):
        rows.append(Row(f"cam/{i}.jpg", "cam", "cam", f"cam{i}", "authentic", "", {"copymove": float(rng.normal(0, 1)), "noise": float(rng.normal(0, 1))}))
    for i in range(20):
        positive = i % 2 == 1
        stats = {"copymove": float(rng.normal(2.0 if positive else 0.0, 1.0)), "noise": float(rng.normal(0, 1))}
        rows.append(Row(f"synth_x/{i}.jpg", "synth_x", "a", f"a:{i // 2}", "tampered" if positive else "authentic", "", stats))
    return rows


def _flip(rows: list[Row], dataset: str) -> list[Row]:
    swap = {"tampered": "authentic", "authentic": "tampered"}
    return [Row(r.file, r.dataset, r.origin, r.group, swap[r.label] if dataset in (r.dataset, r.origin) else r.label, r.kind, r.statistic) for r in rows]


def test_held_out_scores_do_not_depend_on_their_own_labels() -> None:
    rows = _rows()
    before, _ = fitting.leave_one_dataset_out(rows, ["copymove", "noise"], LIMIT, select=False)
    after, _ = fitting.leave_one_dataset_out(_flip(rows, "a"), ["copymove", "noise"], LIMIT, select=False)
    held_out = np.array([r.origin == "a" for r in rows])  # dataset a and the images generated from it
    assert np.allclose(before[held_out], after[held_out])
    assert not np.allclose(before[~held_out], after[~held_out])  # the other folds did train on a


def test_in_sample_scores_do_depend_on_the_labels() -> None:
    rows = _rows()
    model = fitting.fit_model(rows, ["copymove", "noise"], LIMIT)
    flipped = fitting.fit_model(_flip(rows, "a"), ["copymove", "noise"], LIMIT)
    assert not np.allclose(model.scores(rows), flipped.scores(rows))


def test_a_method_that_helps_no_held_out_dataset_gets_no_weight() -> None:
    rows = _rows()
    assert fitting.select_methods(rows, ["copymove", "noise"], LIMIT) == ["copymove"]
    aucs = fitting.dataset_aucs(rows, fitting.leave_one_dataset_out(rows, ["copymove", "noise"], LIMIT)[0])
    assert set(aucs) == {"a", "b", "c", "synth_x"}
    assert min(aucs.values()) > 0.85


def test_every_held_out_auc_gets_an_interval_around_it() -> None:
    rows = _rows()
    scores = np.array([r.statistic["noise"] for r in rows])  # chance: no set is separated
    aucs, intervals = fitting.dataset_aucs(rows, scores), fitting.dataset_auc_intervals(rows, scores)
    assert set(intervals) == set(aucs) == {"a", "b", "c", "synth_x"}
    for dataset, (low, high) in intervals.items():
        assert low <= aucs[dataset] <= high and high - low > 0.01
    # 15 originals with a forgery each in "a": at chance, an interval as wide as such a set allows
    assert intervals["a"][0] < 0.5 < intervals["a"][1] and intervals["a"][1] - intervals["a"][0] > 0.2


def test_bias_keeps_training_false_alarms_at_the_limit() -> None:
    rows = _rows()
    model = fitting.fit_model(rows, ["copymove"], LIMIT)
    scores = model.scores(rows)
    for dataset in ("a", "b", "c", "cam", "synth_x"):
        neg = [s for s, r in zip(scores, rows, strict=True) if r.dataset == dataset and not r.positive]
        assert np.mean(np.asarray(neg) >= 50) <= 0.05


def test_evidence_floor_is_the_median_genuine_score() -> None:
    rows = _rows()
    model = fitting.fit_model(rows, ["copymove"], LIMIT)
    assert model.floors["copymove"] == pytest.approx(fitting.MEDIAN_AUTHENTIC_SCORE, abs=0.01)
    # an image whose copymove statistic is at the authentic median adds nothing over the bias
    median = float(np.median([r.statistic["copymove"] for r in rows if r.label == "authentic"]))
    typical = Row("t.png", "a", "a", "t", "authentic", "", {"copymove": median - 1.0})
    assert model.scores([typical])[0] == pytest.approx(100 / (1 + np.exp(-model.bias)))


@pytest.mark.parametrize(
    ("dataset", "file", "source", "generated", "group"),
    [
        ("cvip_copymove", "tampered/D0_im3_t.png", "", False, "im3"),
        ("comofod_subset", "postprocessed/002_F_JC8.jpg", "", False, "002"),
        ("nuaa_print_attack", "client/0003_01_00_01_0.jpg", "", False, "0003"),
        ("recapture_phone", "authentic/legend/x.jpeg", "", False, "legend"),
        ("casia2_samples", "tampered/Tp_D_CRD_S_N_ani00028_ani00058_00148.tif", "", False, "ani00028"),
        ("casia2_samples", "authentic/Au_ani_00028.jpg", "", False, "ani00028"),
        ("exif_samples_ianare", "jpg/Canon_40D.jpg", "", False, "Canon_40D.jpg"),
        ("synth_local", "tampered/x.jpg", "dresden_natural:authentic/a.JPG", True, "dresden_natural:authentic/a.JPG"),
    ],
)
def test_source_groups(dataset: str, file: str, source: str, generated: bool, group: str) -> None:
    assert source_group(dataset, file, source, generated) == group


def test_a_log_scaled_line_keeps_ranking_far_past_it() -> None:
    """A share-of-the-image statistic spans orders of magnitude: on its log, a clone covering 10 %
    of the picture still carries more evidence than one covering 2 %, where on a linear logistic
    both reach the fusion's clip."""
    from forensics.calibration import Logistic
    from forensics.fusion import evidence

    authentic = np.concatenate([np.zeros(80), np.linspace(0.1, 3.0, 20)])
    linear = fitting.fit_logistic(authentic, Logistic(1.0, 0.5))
    logged = fitting.fit_logistic(authentic, Logistic(1.0, 0.5, log=True))
    assert logged.log and not linear.log
    for logistic in (linear, logged):  # at most 3 of the 100 originals over either line
        assert sum(logistic.score(v) >= 50 for v in authentic) <= 3
    assert evidence(linear.score(20.0)) == evidence(linear.score(100.0))
    assert 0 < evidence(logged.score(20.0)) < evidence(logged.score(100.0))


def test_breakdown_of_a_generated_set_by_origin_and_kind() -> None:
    """Per origin the pairs stay within it; per kind, that kind's edits against every genuine image."""
    rng = np.random.default_rng(3)
    rows = []
    for origin, separated in (("cam", True), ("web", False)):
        for i in range(24):
            positive = i % 2 == 1
            kind = ("clone" if i % 4 == 1 else "blur") if positive else ""
            # "cam": clones and blurs above every genuine image; "web": clones above, blurs below
            value = (2.0 if separated or kind == "clone" else -2.0) if positive else 0.0
            label = "tampered" if positive else "authentic"
            rows.append(Row(f"s/{origin}{i}.jpg", "synth_x", origin, f"{origin}:{i // 2}", label, kind, {"m": value + rng.normal(0, 0.1)}))
    scores = np.array([r.statistic["m"] for r in rows])
    parts = {p.label: p for p in fitting.breakdown(rows, scores, "synth_x")}
    assert list(parts) == ["from cam", "from web", "kind blur", "kind clone"]
    assert (parts["from cam"].positives, parts["from cam"].negatives) == (12, 12)
    assert parts["from cam"].auc == 1.0 and parts["from web"].auc == 0.5
    assert (parts["kind clone"].positives, parts["kind clone"].negatives) == (12, 24)
    assert parts["kind clone"].auc == 1.0 and parts["kind blur"].auc == 0.5  # blurs: above cam's genuine, below web's
    low, high = parts["from web"].interval or (0.0, 0.0)
    assert low <= 0.5 <= high
    assert fitting.breakdown(rows, scores, "other") == []
