"""Fusion: a method that found nothing never raises the score, and the summary names what did."""

import math

import pytest

from forensics import Finding, Status
from forensics.fusion import Verdict, fuse

PARAMS = {"bias": -4.0, "weights": {"copymove": 1.0, "metadata": 1.5, "noise": 0.0}, "floors": {"copymove": 5.0, "metadata": 1.0, "noise": 5.0}}


def finding(method: str, score: float) -> Finding:
    return Finding(method, "1", Status.OK, score, "label", f"{method} summary", {"statistic": score})


def test_methods_at_or_below_their_floor_add_nothing() -> None:
    fused = fuse([finding("copymove", 5.0), finding("metadata", 0.5), finding("noise", 3.0)], (64, 64), PARAMS)
    assert fused.contributions == {"copymove": 0.0, "metadata": 0.0, "noise": 0.0}
    assert fused.score == pytest.approx(100 / (1 + math.exp(4.0)))
    assert fused.verdict == Verdict.NO_EVIDENCE
    assert "3 of 3 method(s) found nothing" in fused.summary and "Weak signs" not in fused.summary
    assert fused.issues == ()


def test_a_method_without_weight_never_drives_the_score() -> None:
    fused = fuse([finding("noise", 99.9), finding("copymove", 2.0)], (64, 64), PARAMS)
    assert fused.contributions["noise"] == 0.0
    assert fused.verdict == Verdict.NO_EVIDENCE
    assert not fused.issues and "noise" not in fused.summary


def test_the_summary_names_exactly_the_methods_that_raised_the_score() -> None:
    # two methods under their own line whose evidence together crosses the fused line
    fused = fuse([finding("copymove", 45.0), finding("metadata", 40.0), finding("noise", 80.0)], (64, 64), PARAMS)
    raised = {name for name, c in fused.contributions.items() if c > 0}
    assert raised == {"copymove", "metadata"}
    assert fused.score is not None and fused.score >= 50 and fused.verdict == Verdict.LIKELY_MANIPULATED
    assert "2 method(s) found signs of editing that raised the score: metadata (40), copymove (45)." in fused.summary
    assert [i.split(":")[0] for i in fused.issues] == ["metadata", "copymove"]
    # the score is the bias plus the reported contributions
    z = fused.bias + sum(fused.contributions.values())
    assert fused.score == pytest.approx(100 / (1 + math.exp(-z)))
    assert fused.to_dict()["bias"] == -4.0
