"""Calibrated parameters: how each method's raw statistic maps to a 0-100 score, and fusion weights.

The numbers live in ``calibration.json`` beside this module and are written only by
``scripts/calibrate.py`` from labelled data (``../shared/data``); a method's class
defaults (taken from its paper where it gives one) apply until a fit exists.
"""

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True, slots=True)
class Logistic:
    """score = 100 / (1 + exp(-(t(statistic) - center) / scale)); ``center`` is the decision line.

    ``t`` is the identity, or ``log1p`` when ``log`` is set: for a non-negative statistic that
    spans orders of magnitude (a share of the image), where a logistic in the raw value would
    reach 100 just past the decision line and leave the evidence above it unranked.
    """

    center: float
    scale: float
    source: str = "default"
    log: bool = False

    def transform(self, statistic: float) -> float:
        return math.log1p(max(statistic, 0.0)) if self.log else statistic

    def score(self, statistic: float) -> float:
        z = (self.transform(statistic) - self.center) / self.scale
        z = max(-50.0, min(50.0, z))
        return 100.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "log": self.log, "source": self.source}


@lru_cache(maxsize=1)
def load_calibration() -> dict[str, Any]:
    """The fitted parameters, or an empty calibration when none has been fitted yet."""
    if not CALIBRATION_FILE.exists():
        return {"methods": {}, "fusion": {}}
    return json.loads(CALIBRATION_FILE.read_text())


def method_logistic(name: str, default: Logistic) -> Logistic:
    fitted = load_calibration().get("methods", {}).get(name)
    if not fitted:
        return default
    return Logistic(
        center=float(fitted["center"]), scale=float(fitted["scale"]), source=str(fitted.get("source", "fitted")), log=bool(fitted.get("log", False))
    )
