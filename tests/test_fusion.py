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
    assert "3 of 3 method(s) found nothing" in fused.summary and "raised the score" not in fused.summary
    assert fused.issues == ()


def test_a_score_under_the_line_names_what_raised_it_without_calling_it_weak() -> None:
    # copymove over its own line (70) raises the fused score, not over 50: its score is not a "weak sign"
    fused = fuse([finding("copymove", 70.0), finding("metadata", 0.5)], (64, 64), PARAMS)
    assert fused.verdict == Verdict.NO_EVIDENCE
    assert "1 of 2 method(s) found nothing beyond what genuine photos show." in fused.summary
    assert "Evidence that raised the score without taking it over the line: copymove (70)." in fused.summary


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


def test_a_trace_dwarfed_by_the_evidence_is_not_named_but_a_method_over_its_line_is() -> None:
    # metadata at 99 carries the score; copymove at 6 adds a trace (0.19 of 14 log-odds) and its own
    # finding says it found nothing, so it is not named; ela at 75, over its own line, adds little
    # (a small weight) but did find signs, so it is named
    params = {**PARAMS, "weights": {**PARAMS["weights"], "ela": 0.05}, "floors": {**PARAMS["floors"], "ela": 5.0}}
    fused = fuse([finding("metadata", 99.0), finding("copymove", 6.0), finding("ela", 75.0)], (64, 64), params)
    assert 0.05 < fused.contributions["copymove"] < 0.1 * fused.contributions["metadata"]
    assert 0.05 < fused.contributions["ela"] < 0.1 * fused.contributions["metadata"]
    assert "2 method(s) found signs of editing that raised the score: metadata (99), ela (75)." in fused.summary
    assert [i.split(":")[0] for i in fused.issues] == ["metadata", "ela"]
    assert "copymove: copymove summary" in fused.positives
    # every contribution, named or not, still adds up to the score
    assert fused.score == pytest.approx(100 / (1 + math.exp(-(fused.bias + sum(fused.contributions.values())))))


def _quality(reading: float, warning: str | None) -> Finding:
    details = {"quality": reading, "low_quality": warning is not None} | ({"warning": warning} if warning else {})
    return Finding("quality", "1", Status.OK, None, "poor quality", "quality summary", details)


def test_a_low_quality_warning_qualifies_a_clean_verdict_and_never_moves_the_score() -> None:
    warning = "Low image quality (22/100: strong blur): weak evidence of editing may be missed."
    plain = fuse([finding("copymove", 5.0)], (64, 64), PARAMS)
    warned = fuse([finding("copymove", 5.0), _quality(22.0, warning)], (64, 64), PARAMS)
    assert warned.score == plain.score and warned.contributions == plain.contributions
    assert warned.summary == plain.summary + " " + warning
    good = fuse([finding("copymove", 5.0), _quality(85.0, None)], (64, 64), PARAMS)
    assert good.summary == plain.summary


def test_a_low_quality_warning_does_not_soften_a_positive_verdict() -> None:
    fused = fuse([finding("metadata", 99.0), _quality(22.0, "Low image quality (22/100).")], (64, 64), PARAMS)
    assert fused.verdict == Verdict.LIKELY_MANIPULATED and "Low image quality" not in fused.summary
