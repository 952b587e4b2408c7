"""Fuse the methods' findings into one tamper score, verdict, summary and localization map.

The fused score is a logistic model over the methods' calibrated evidence, fitted in
``scripts/calibrate.py`` (weights that rank each benchmark's forgeries above its originals,
then a logistic regression for their scale and the bias):

    logit(tamper) = bias + sum_m weight_m * evidence_m
    evidence_m    = clip(logit(score_m / 100), EVIDENCE_FLOOR, LOGIT_CLIP) - EVIDENCE_FLOOR

Each method counts by the evidence it *found*, from 0 at a score of about 1 (log-odds
EVIDENCE_FLOOR) upwards: the methods are specialists (a copy-move detector says nothing about
double compression), so a specialist's very low score must not argue for authenticity the way
plain log-odds pooling would, yet scores between 1 and 50 still rank images. The floor was
chosen on ``scripts/calibrate.py`` figures: -3 and above lose the metadata cue of a re-save
with injected EXIF (mapo80 AUC 0.97 -> 0.53) for a small gain on NoSo (0.65 -> 0.71) and none
on CASIA or CoMoFoD. The weights
are non-negative, methods that do not apply or failed contribute nothing, and each
contribution is reported, so the score is explainable term by term. Nothing else in the code
base decides verdicts.
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
LOGIT_CLIP = 6.0
EVIDENCE_FLOOR = -4.5
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
            "contributions": {k: round(v, 3) for k, v in self.contributions.items()},
        }


def evidence(score: float) -> float:
    """A method's evidence: its score's log-odds, clipped to [EVIDENCE_FLOOR, LOGIT_CLIP], minus the floor."""
    p = min(max(score / 100.0, 1e-6), 1 - 1e-6)
    return max(EVIDENCE_FLOOR, min(LOGIT_CLIP, math.log(p / (1 - p)))) - EVIDENCE_FLOOR


def fused_logit(scores: Mapping[str, float], params: Mapping[str, Any] | None = None) -> tuple[float, dict[str, float]]:
    """The fused log-odds and each method's contribution, from the methods' 0-100 scores."""
    params = load_calibration().get("fusion", {}) if params is None else params
    weights: Mapping[str, float] = params.get("weights", {})
    contributions = {name: float(weights.get(name, 1.0)) * evidence(score) for name, score in scores.items()}
    return float(params.get("bias", 0.0)) + sum(contributions.values()), contributions


def score_of_logit(z: float) -> float:
    return 100.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def fuse(findings: Sequence[Finding], image_shape: tuple[int, int]) -> Fused:
    """Combine ``findings`` of one image of ``image_shape`` (height, width)."""
    scored = [f for f in findings if f.status is Status.OK and f.score is not None]
    z, contributions = fused_logit({f.method: f.score for f in scored})  # type: ignore[misc]
    issues = tuple(f"{f.method}: {f.summary}" for f in scored if f.score >= DECISION_LINE)  # type: ignore[operator]
    positives = tuple(f"{f.method}: {f.summary}" for f in scored if f.score < DECISION_LINE)  # type: ignore[operator]
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
    top = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
    drivers = ", ".join(name for name, c in top if c > 0)[:200]
    if manipulated:
        summary = (
            f"Tamper score {score:.0f}/100: likely manipulated ({confidence} confidence). "
            f"{len(issues)} method(s) found signs of editing" + (f", driven by {drivers}." if drivers else ".")
        )
        recommendation = (
            "Do not publish as an unedited original without confirmation: ask the source for the camera "
            "original and inspect the highlighted regions."
        )
    else:
        summary = (
            f"Tamper score {score:.0f}/100: no manipulation detected ({confidence} confidence). "
            f"{len(positives)} method(s) found nothing suspicious. Absence of evidence is not proof of authenticity."
        )
        recommendation = (
            "No technical sign of editing was found; still verify the source and context before publishing."
        )
    return Fused(score, verdict, confidence, summary, issues, positives, recommendation, contributions, heatmap)


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
