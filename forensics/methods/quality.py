"""Image quality: a learned 0-100 reading of blur, noise and compression, reported as information.

Why it is here: every trace the other methods read (noise residuals, JPEG grids, resampling
periodicity, copied texture) fades in a blurred, noisy or heavily compressed photo, so a
clean result on such a photo says less than on a sharp original. The commercial reference's
"quality model" reports the same, and states that a poor-quality image is "not enough by
itself to produce a tamper score over 50": this finding therefore carries no score
(``score`` None, so fusion leaves it out of the tamper score); fusion may add a low-quality
warning to the summary when the other evidence is weak (``details["low_quality"]``).

The reading comes from a small network (``training/quality.py``) on the blur, noise and
compression measures of :mod:`forensics.learn.quality_features` (Laplacian variance across
scales, edge width, Immerkaer's and Donoho's noise estimates, JPEG blockiness, the luma
quantization step), trained on camera originals degraded by drawn blur, noise, rescaling and
re-compression; it also estimates each cause's share of the loss (penalties 0-100), which
name the cause in the summary. Labels: good from :data:`GOOD` up, fair from :data:`POOR`
up, poor below :data:`POOR` (a sigma-3 blur, JPEG quality 15 or noise sigma 25 alone read
poor).
"""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from forensics.finding import Finding, Status
from forensics.image import DecodedImage
from forensics.learn.quality_features import FEATURE_NAMES, MIN_SIDE, describe, quality_features
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model
from forensics.methods.base import Method

VERSION = "1.0"
MODEL = "quality"
#: The model's outputs, in order: the reading, then the estimated penalty of each cause (0-100).
OUTPUTS: tuple[str, ...] = ("quality", "blur", "noise", "compression")
#: Reading from which the image is "good quality", and below which it is "poor quality".
GOOD = 70.0
POOR = 40.0
#: A cause's penalty from which the summary names it, and from which it is called strong.
NAMED_PENALTY = 15.0
STRONG_PENALTY = 35.0
_CAUSE_WORDS = {"blur": "blur", "noise": "noise", "compression": "compression"}


class Quality(Method):
    name: ClassVar[str] = "quality"
    version: ClassVar[str] = VERSION

    def __init__(self, models_dir: Path = MODELS_DIR) -> None:
        #: Where the model and its card are read from (a test points it at a copy).
        self.models_dir = models_dir

    def examine(self, image: DecodedImage) -> Finding:
        if min(image.width, image.height) < MIN_SIDE:
            return self.not_applicable(
                f"The image is {image.width}x{image.height} px; the quality reading needs at least {MIN_SIDE} px on each side."
            )
        try:
            model = load_model(MODEL, self.models_dir)
        except ModelUnavailable as exc:
            return self.error(f"The quality model is unavailable: {exc}.")
        if list(model.card.get("features", [])) != list(FEATURE_NAMES) or list(model.card.get("output_order", [])) != list(OUTPUTS):
            return self.error(
                "The quality model is unavailable: its card lists other features or outputs than this engine computes; retrain it."
            )
        table = image.jpeg.table_for(0) if image.jpeg is not None else None
        features = quality_features(image.luma, table)
        readings = np.clip(model.run(features=features[None])[0][0], 0.0, 100.0)
        quality = float(readings[0])
        penalties = {name: round(float(v), 1) for name, v in zip(OUTPUTS[1:], readings[1:], strict=True)}
        label = "good quality" if quality >= GOOD else "fair quality" if quality >= POOR else "poor quality"
        causes = _causes(penalties)
        summary = _summary(quality, causes)
        details: dict[str, Any] = {
            "quality": round(quality, 1),
            "low_quality": quality < POOR,
            "thresholds": {"good": GOOD, "poor": POOR},
            "penalties": penalties,
            "causes": causes,
            **describe(features),
            "features": {name: round(float(v), 4) for name, v in zip(FEATURE_NAMES, features, strict=True)},
            "model": {"name": MODEL, "version": model.version, "sha256": model.card["sha256"][:16]},
        }
        if quality < POOR:
            details["warning"] = (
                f"Low image quality ({quality:.0f}/100{': ' + ', '.join(causes) if causes else ''}): weak evidence of editing may be missed."
            )
        return Finding(self.name, self.version, Status.OK, None, label, summary, details)


def _causes(penalties: dict[str, float]) -> list[str]:
    """The causes worth naming, largest first, as words ("strong blur", "some noise")."""
    named = sorted(((v, k) for k, v in penalties.items() if v >= NAMED_PENALTY), reverse=True)
    return [f"{'strong' if v >= STRONG_PENALTY else 'some'} {_CAUSE_WORDS[k]}" for v, k in named]


def _summary(quality: float, causes: list[str]) -> str:
    reading = f"Image quality {quality:.0f}/100"
    why = f": {', '.join(causes)}" if causes else ""
    if quality < POOR:
        return f"{reading}{why}; weak evidence of editing may be missed. This reading never raises the tamper score on its own."
    if quality < GOOD:
        return f"{reading}{why}; faint traces may be weakened. This reading never raises the tamper score on its own."
    return f"{reading}{why or ': sharp, clean and lightly compressed'}. This reading never raises the tamper score on its own."
