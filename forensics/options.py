"""Per-request analysis options: what a caller may choose about how an image is examined."""

from dataclasses import dataclass
from enum import StrEnum


class Sensitivity(StrEnum):
    """How hard the learned localizer looks: more passes find fainter traces and take longer."""

    FAST = "fast"
    DEFAULT = "default"
    THOROUGH = "thorough"


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Options recorded with every report; the defaults are what an unqualified request gets."""

    sensitivity: Sensitivity = Sensitivity.DEFAULT

    def to_dict(self) -> dict[str, str]:
        return {"sensitivity": self.sensitivity.value}


DEFAULT_OPTIONS = AnalysisOptions()
