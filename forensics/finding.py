"""The one shape every forensic method reports in, so fusion, storage and pages treat all alike."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np


class Status(StrEnum):
    OK = "ok"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


@dataclass(frozen=True, eq=False)
class Finding:
    """One method's verdict on one image.

    ``score`` is 0-100 (50 is the method's calibrated decision line) when ``status`` is ok,
    and ``None`` otherwise: a method that does not apply says so rather than invent a number.
    ``details`` holds the raw, JSON-serialisable measurements the score was computed from,
    including ``statistic`` and the ``calibration`` that maps it to the score.
    ``heatmap`` is a float32 map in [0, 1] (1 = most suspicious) at any resolution; it is
    resized to the image when rendered. ``views`` are optional uint8 visualisations
    (enhancement views) that carry no score.
    """

    method: str
    version: str
    status: Status
    score: float | None
    label: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    views: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form without the arrays (those are rendered to PNG separately)."""
        return {
            "method": self.method,
            "version": self.version,
            "status": self.status.value,
            "score": None if self.score is None else round(float(self.score), 1),
            "label": self.label,
            "summary": self.summary,
            "details": dict(self.details),
            "has_heatmap": self.heatmap is not None,
            "views": sorted(self.views),
            "seconds": round(self.seconds, 4),
        }
