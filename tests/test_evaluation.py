"""The evaluation metrics agree with their textbook definitions on hand-checked cases."""

import numpy as np
import pytest

from forensics.evaluation import format_auc, format_rate, grouped_auc_interval, pixel_f1, roc_auc, tpr_at_fpr, wilson_interval


def test_auc_perfect_random_and_ties() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    # 3 of 4 pairs ordered, none tied
    assert roc_auc([0.4, 0.9], [0.5, 0.1]) == pytest.approx(0.75)


def test_auc_matches_rank_formula_on_random_data() -> None:
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 200), rng.normal(0, 1, 300)
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(pos, neg).statistic
    assert roc_auc(list(pos), list(neg)) == pytest.approx(u / (200 * 300))


def test_tpr_at_low_fpr() -> None:
    neg = list(np.arange(100) / 100)  # 0.00 .. 0.99
    pos = [0.955, 0.97, 0.5, 0.2]
    # a threshold of 0.955 lets 4 negatives (0.96..0.99) through = 4 % FPR, catching 2 of 4 positives
    assert tpr_at_fpr(pos, neg, 0.05) == pytest.approx(0.5)


def test_pixel_f1() -> None:
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    heat = np.zeros((10, 10), np.float32)
    heat[:5, :5] = 1.0
    # predicted 25 px, all inside a 50 px mask: F1 = 2*25/(25+50)
    assert pixel_f1(heat, mask) == pytest.approx(50 / 75)
    assert pixel_f1(np.zeros((10, 10), np.float32), np.zeros((10, 10), bool)) == 0.0


@pytest.mark.parametrize(
    ("hits", "total", "low", "high"),
    # Newcombe, "Two-sided confidence intervals for the single proportion", Statistics in Medicine 17 (1998), table II
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_published_values(hits: int, total: int, low: float, high: float) -> None:
    interval = wilson_interval(hits, total)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=5e-5)
    assert wilson_interval(0, 0) is None


def _separated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` forgeries and ``n`` originals whose scores overlap (AUC about 0.75)."""
    labels = np.repeat([True, False], n)
    return np.where(labels, rng.normal(1.0, 1.5, 2 * n), rng.normal(0.0, 1.5, 2 * n)), labels


def test_grouped_bootstrap_counts_copies_of_one_original_once() -> None:
    scores, labels = _separated(np.random.default_rng(3), 20)
    alone = grouped_auc_interval(scores, labels, ~labels, [str(i) for i in range(scores.size)])
    assert alone is not None and alone[0] < roc_auc(list(scores[labels]), list(scores[~labels])) < alone[1]
    # every image ten times over (ten versions of each original): grouped, the evidence is unchanged ...
    copies = np.repeat(scores, 10), np.repeat(labels, 10)
    grouped = grouped_auc_interval(copies[0], copies[1], ~copies[1], [str(i) for i in np.repeat(np.arange(scores.size), 10)])
    assert grouped == pytest.approx(alone)
    # ... counted as independent images, the interval would claim a certainty the data do not have
    naive = grouped_auc_interval(copies[0], copies[1], ~copies[1], [str(i) for i in range(copies[0].size)])
    assert naive is not None and naive[1] - naive[0] < 0.5 * (alone[1] - alone[0])


def test_grouped_bootstrap_pairs_within_a_stratum_only() -> None:
    # within each origin every forgery outranks every original; across origins they do not
    scores = np.array([1.0, 0.0, 11.0, 10.0, 21.0, 20.0])
    labels = np.array([True, False] * 3)
    strata = ["a", "a", "b", "b", "c", "c"]
    groups = ["a", "a", "b", "b", "c", "c"]
    assert grouped_auc_interval(scores, labels, ~labels, groups, strata) == (1.0, 1.0)
    assert grouped_auc_interval(scores, labels, ~labels, groups)[0] < 1.0  # type: ignore[index]
    assert grouped_auc_interval(scores[labels], labels[labels], ~labels[labels], groups[::2]) is None


def test_printed_rates_and_aucs_carry_their_intervals() -> None:
    assert format_rate(81, 263) == "30.8% (81/263) [25.5-36.6]"  # Newcombe's example, above
    assert format_rate(0, 0) == "-"
    scores, labels = np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False])
    assert format_auc(scores, labels, ~labels, ["a", "b", "c", "d"]) == "1.000 [1.00-1.00]"
    assert format_auc(scores[labels], labels[labels], ~labels[labels], ["a", "b"]) == "-"
