"""The evaluation metrics agree with their textbook definitions on hand-checked cases."""

import numpy as np
import pytest

from forensics.evaluation import pixel_f1, roc_auc, tpr_at_fpr


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
