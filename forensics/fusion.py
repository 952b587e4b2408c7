"""Fuse the methods' findings into one tamper score, verdict, summary and localization map.

The fused score is a logistic model over the methods' calibrated evidence, fitted in
``forensics/fitting.py`` (run by ``scripts/calibrate.py``; weights that rank each benchmark's
forgeries above its originals, chosen and checked leave-one-dataset-out, then a logistic
regression for their scale and the bias):

    logit(tamper) = bias + sum_m weight_m * evidence_m
    evidence_m    = clip(logit(score_m / 100), floor_m, LOGIT_CLIP) - floor_m

Each method counts only by the evidence it *found*: ``floor_m`` is the log-odds of the
method's score on a typical genuine photo (the median authentic image of the calibration
data, and never under a score of FLOOR_SCORE), so a method that found nothing, or no more
than an ordinary camera original shows, contributes exactly 0 and can never raise the score;
a specialist's silence is not evidence of authenticity either, so nothing goes below 0.
Scores between the floor and 50 still add weak evidence that ranks images. The weights are
non-negative, methods that do not apply or failed contribute nothing, and the bias and each
contribution are reported, so the score is explainable term by term. Nothing else in the
code base decides verdicts.

Information-only findings (a score of ``None``, such as the image quality reading) never enter
the score; a ``warning`` in their details (a poor-quality photo, where faint traces are easily
lost) is added to the summary when the verdict is "no manipulation detected", where it tells
the reader how much that absence of evidence is worth.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from forensics.calibration import load_calibration
from forensics.finding import Finding, Status

DECISION_LINE = 50.0
LOGIT_CLIP = 13.0
#: The lowest floor a method's evidence may have, as a score: below about 1 a score is a
#: method's statement that it found nothing, whatever its calibration.
FLOOR_SCORE = 1.0
#: A contribution below this (log-odds) is reported but does not count as a method "driving" the score.
DRIVER_MIN = 0.05
#: Share of the evidence that raised the score which a method under its own line must supply to be
#: named as a driver: a method that scored 6 beside one that scored 98 added a trace of its own
#: log-odds, and naming it among the "signs of editing" would contradict its own finding.
DRIVER_SHARE = 0.1
#: Long side of the fused map; it is resized to the image when written out.
MAP_SIDE = 1024


class Verdict:
    LIKELY_MANIPULATED = "likely_manipulated"
    NO_EVIDENCE = "no_manipulation_detected"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, eq=False)
class Fused:
    score: float | None
    verdict: str
    confidence: str
    summary: str
    issues: tuple[str, ...]
    positives: tuple[str, ...]
    recommendation: str
    contributions: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    heatmap: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tamper_score": None if self.score is None else round(self.score, 1),
            "verdict": self.verdict,
            "confidence": self.confidence,
            "summary": self.summary,
            "issues": list(self.issues),
            "positives": list(self.positives),
            "recommendation": self.recommendation,
            "bias": round(self.bias, 3),
            "contributions": {k: round(v, 3) for k, v in self.contributions.items()},
        }


def logit(score: float) -> float:
    """The log-odds of a 0-100 score."""
    p = min(max(score / 100.0, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def evidence(score: float, floor_score: float = FLOOR_SCORE) -> float:
    """A method's evidence: its score's log-odds above the floor's, at most LOGIT_CLIP; 0 at or below the floor."""
    floor = logit(max(floor_score, FLOOR_SCORE))
    return max(floor, min(LOGIT_CLIP, logit(score))) - floor


def fused_logit(scores: Mapping[str, float], params: Mapping[str, Any] | None = None) -> tuple[float, dict[str, float]]:
    """The fused log-odds and each method's contribution, from the methods' 0-100 scores."""
    params = load_calibration().get("fusion", {}) if params is None else params
    weights: Mapping[str, float] = params.get("weights", {})
    floors: Mapping[str, float] = params.get("floors", {})
    contributions = {
        name: float(weights.get(name, 0.0)) * evidence(score, float(floors.get(name, FLOOR_SCORE))) for name, score in scores.items()
    }
    return float(params.get("bias", 0.0)) + sum(contributions.values()), contributions


def score_of_logit(z: float) -> float:
    return 100.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def fuse(findings: Sequence[Finding], image_shape: tuple[int, int], params: Mapping[str, Any] | None = None) -> Fused:
    """Combine ``findings`` of one image of ``image_shape`` (height, width) with the fusion
    ``params`` (bias, weights, floors; default: the shipped calibration's)."""
    scored = [f for f in findings if f.status is Status.OK and f.score is not None]
    params = load_calibration().get("fusion", {}) if params is None else params
    scores = {f.method: float(f.score) for f in scored if f.score is not None}
    z, contributions = fused_logit(scores, params)
    bias = float(params.get("bias", 0.0))
    heatmap = fuse_heatmaps(scored, image_shape)
    if not scored:
        return Fused(
            score=None,
            verdict=Verdict.INCONCLUSIVE,
            confidence="none",
            summary="No forensic method could examine this image, so no score is given.",
            issues=(),
            positives=(),
            recommendation="Obtain the original file from its source.",
            heatmap=None,
        )
    score = score_of_logit(z)
    distance = abs(score - DECISION_LINE)
    confidence = "high" if distance >= 35 else "medium" if distance >= 15 else "low"
    manipulated = score >= DECISION_LINE
    verdict = Verdict.LIKELY_MANIPULATED if manipulated else Verdict.NO_EVIDENCE
    by_name = {f.method: f for f in scored}
    drivers = _drivers(contributions, scores)
    # issues: what raised the score, strongest first; positives: every other method that examined the image
    issues = tuple(f"{name}: {by_name[name].summary}" for name in drivers)
    positives = tuple(f"{f.method}: {f.summary}" for f in scored if f.method not in drivers)
    named = ", ".join(f"{name} ({by_name[name].score:.0f})" for name in drivers)
    if manipulated:
        summary = (
            f"Tamper score {score:.0f}/100: likely manipulated ({confidence} confidence). "
            f"{len(drivers)} method(s) found signs of editing that raised the score: {named}."
        )
        recommendation = (
            "Do not publish as an unedited original without confirmation: ask the source for the camera "
            "original and inspect the highlighted regions."
        )
    else:
        weak = f" Evidence that raised the score without taking it over the line: {named}." if drivers else ""
        warnings = "".join(f" {w}" for w in _warnings(findings))
        summary = (
            f"Tamper score {score:.0f}/100: no manipulation detected ({confidence} confidence). "
            f"{len(scored) - len(drivers)} of {len(scored)} method(s) found nothing beyond what genuine photos show.{weak} "
            f"Absence of evidence is not proof of authenticity.{warnings}"
        )
        recommendation = (
            "No technical sign of editing was found; still verify the source and context before publishing."
        )
    return Fused(score, verdict, confidence, summary, issues, positives, recommendation, contributions, bias, heatmap)


def _drivers(contributions: Mapping[str, float], scores: Mapping[str, float]) -> list[str]:
    """The methods named as having raised the score, strongest first: a contribution of at least
    DRIVER_MIN from a method over its own line, or, from one under it, at least DRIVER_SHARE of
    all the evidence that raised the score (several methods under their lines may together cross
    the fused one). Every contribution, named or not, is in the report."""
    raised = sum(c for c in contributions.values() if c > 0)
    return [
        name
        for name, c in sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
        if c >= DRIVER_MIN and (scores[name] >= DECISION_LINE or c >= DRIVER_SHARE * raised)
    ]


def _warnings(findings: Sequence[Finding]) -> list[str]:
    """Warnings of the information-only findings (score None), e.g. a low image quality."""
    return [str(f.details["warning"]) for f in findings if f.status is Status.OK and f.score is None and f.details.get("warning")]


def fuse_heatmaps(findings: Sequence[Finding], image_shape: tuple[int, int]) -> np.ndarray | None:
    """Pixel-wise maximum of the methods' maps, each scaled by its method's score / 100.

    Scaling by the score keeps an unsuspicious method's map dim: a bright fused map means a
    method that is confident *and* localised its evidence there.
    """
    maps = [f for f in findings if f.heatmap is not None and f.score is not None]
    if not maps:
        return None
    h, w = image_shape
    factor = min(1.0, MAP_SIDE / max(h, w))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    fused = np.zeros((size[1], size[0]), np.float32)
    for f in maps:
        resized = cv2.resize(f.heatmap, size, interpolation=cv2.INTER_LINEAR)  # type: ignore[arg-type]
        np.maximum(fused, resized * (f.score / 100.0), out=fused)  # type: ignore[operator]
    return fused
