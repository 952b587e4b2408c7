"""The base class every forensic method derives from.

A subclass declares ``name``, ``version``, ``applies_to`` and its default statistic-to-score
logistic, and implements :meth:`Method.examine`. :meth:`Method.run` adds what every method
shares: the applicability check, timing, and turning an unexpected exception into an
``error`` Finding so that one failing method never stops the others.
"""

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from forensics.calibration import Logistic, method_logistic
from forensics.finding import Finding, Status
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.options import DEFAULT_OPTIONS, AnalysisOptions

logger = logging.getLogger(__name__)

ALL_FORMATS: frozenset[ImageFormat] = frozenset(ImageFormat)


class Method(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    applies_to: ClassVar[frozenset[ImageFormat]] = ALL_FORMATS
    #: Default mapping of the raw statistic to a score, used until ``calibration.json`` has a fit.
    default_logistic: ClassVar[Logistic] = Logistic(center=0.5, scale=0.1)
    #: False for methods whose statistic is documented evidence points (metadata, structure):
    #: their decision line is a rule ("a named editor crosses 50"), and the benchmark labels
    #: ("authentic" = no copy-move, yet saved with Photoshop) do not measure what they detect.
    fit_logistic: ClassVar[bool] = True
    #: True for a method that ships data collected from benchmark datasets (a table of camera
    #: encoders): leave-one-dataset-out evaluation recomputes its statistic without the held-out
    #: dataset's share of that data (:meth:`statistic_excluding`), so no figure counts data the
    #: method has seen.
    uses_dataset_data: ClassVar[bool] = False
    #: False for a learned detector whose model was fitted on the benchmark photos themselves
    #: (the AI probe, the recapture network): no fusion weight could be fitted for it without
    #: scoring data it has seen, so it reports its own reading beside the tamper score.
    joins_fusion: ClassVar[bool] = True
    #: True for a method that reads the image's CLIP features (the embedding or the class token of
    #: :func:`forensics.learn.clip_encoder.embed_image`): the service computes them once per image
    #: beside the shared decode when such a method runs.
    reads_clip_embedding: ClassVar[bool] = False
    #: CPU seconds the method takes on a 24 MP camera JPEG (``bench/bench_engine.py``, 2-core
    #: reference machine); only the scheduler reads it (:func:`forensics.pipeline.run_methods`).
    cost_seconds: ClassVar[float] = 0.01

    def run(self, image: DecodedImage, options: AnalysisOptions = DEFAULT_OPTIONS) -> Finding:
        """Examine ``image``; never raises for a problem inside the method."""
        start = time.perf_counter()
        if image.format not in self.applies_to:
            finding = self.not_applicable(f"This method does not apply to {image.format.value.upper()} files.")
        else:
            try:
                finding = self.examine_with(image, options)
            except Exception as exc:  # a method's bug must not stop the other methods
                logger.exception("method %s failed on %s", self.name, image.filename or image.sha256)
                finding = self.error(f"The method failed: {type(exc).__name__}: {exc}")
        return replace(finding, seconds=time.perf_counter() - start)

    @abstractmethod
    def examine(self, image: DecodedImage) -> Finding:
        """Measure ``image`` and report; return :meth:`ok` or :meth:`not_applicable`."""

    def examine_with(self, image: DecodedImage, options: AnalysisOptions) -> Finding:
        """:meth:`examine` under the request's ``options``; methods with a choice to make override this."""
        return self.examine(image)

    def statistic_excluding(self, details: Mapping[str, Any], excluded: frozenset[str]) -> float:
        """The statistic of a finding with these ``details`` had the method never seen the ``excluded`` datasets."""
        return float(details["statistic"])

    @property
    def logistic(self) -> Logistic:
        return method_logistic(self.name, self.default_logistic)

    def ok(
        self,
        statistic: float,
        label: str,
        summary: str,
        details: Mapping[str, Any],
        heatmap: np.ndarray | None = None,
        views: Mapping[str, np.ndarray] | None = None,
    ) -> Finding:
        """An applicable result whose score is the calibrated logistic of ``statistic``."""
        logistic = self.logistic
        if heatmap is not None:
            heatmap = np.clip(np.nan_to_num(heatmap.astype(np.float32, copy=False)), 0.0, 1.0)
        return Finding(
            method=self.name,
            version=self.version,
            status=Status.OK,
            score=logistic.score(statistic),
            label=label,
            summary=summary,
            details={**details, "statistic": float(statistic), "calibration": logistic.to_dict()},
            heatmap=heatmap,
            views=MappingProxyType(dict(views or {})),
        )

    def views_only(self, summary: str, details: Mapping[str, Any], views: Mapping[str, np.ndarray]) -> Finding:
        """A result that only offers visual ``views``: status ok but ``score`` None, so fusion ignores it."""
        return Finding(
            method=self.name,
            version=self.version,
            status=Status.OK,
            score=None,
            label="views",
            summary=summary,
            details=dict(details),
            views=MappingProxyType(dict(views)),
        )

    def not_applicable(self, summary: str, details: Mapping[str, Any] | None = None) -> Finding:
        return Finding(self.name, self.version, Status.NOT_APPLICABLE, None, "not applicable", summary, dict(details or {}))

    def error(self, summary: str, details: Mapping[str, Any] | None = None) -> Finding:
        return Finding(self.name, self.version, Status.ERROR, None, "error", summary, dict(details or {}))
