"""Deep scan: a learned per-pixel localizer of splices, retouching and resampled pastes.

A compact fully convolutional network (``training/deep_scan.py``) reads, per 8x8 block, the
noise-residual, DCT, blocking-grid and double-quantization traces of
:mod:`forensics.learn.block_features` and predicts the share of the block that was edited.
Its design follows the learned localizers that read traces rather than content: the
noise stream of Zhou, Han, Morariu & Davis ("Learning rich features for image manipulation
detection", CVPR 2018), the anomaly-against-surround idea of ManTra-Net (Wu, AbdAlmageed &
Natarajan, CVPR 2019) and the DCT stream of CAT-Net (Kwon et al., IJCV 2022); the network is
small so that it runs on the CPU through onnxruntime.

Sensitivities: ``default`` runs the network once on the block map, pooled 2x2 or 3x3 above
:data:`~forensics.learn.block_features.MAX_CELLS` blocks (about 5 MP) so that a large photo
costs little more than a small one; ``fast`` also leaves out the double-quantization channel
(the costly one; the network was trained with it missing a fifth of the time); ``thorough``
works on every 8x8 block and averages the network over the eight flips and transposes of the
map (test-time augmentation), which steadies faint evidence at many times the cost.

The statistic is the mean probability of the most suspicious 1 % of blocks (at least nine)
after 3x3 smoothing: one isolated block does not make a region. The heatmap is the block
probability map.

The shipped model was trained on crops of the camera and phone photos its card lists under
``data_sources``. So that no leave-one-dataset-out figure counts a photo the network has seen,
``scripts/calibrate.py`` sets ``FORENSICS_DEEP_SCAN_FOLDS`` to a folder of fold models
(``<folder>/<dataset>/deep_scan.onnx``, each trained with ``--exclude <dataset>``, and
``<folder>/<a>+<b>/`` without two, for the method selection nested inside each held-out fold):
the method then also records each fold model's statistic, and
:meth:`DeepScan.statistic_excluding` answers with the one trained without the held-out
datasets.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.jpeg_history import box3
from forensics.learn.block_features import BLOCK, CHANNELS, block_features, pool_factor, pooled
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, OnnxModel, card_path, load_model
from forensics.methods.base import Method
from forensics.options import AnalysisOptions, Sensitivity

VERSION = "1.3"
MODEL = "deep_scan"
#: Blocks on the shorter side below which there is too little image to compare regions.
MIN_BLOCKS = 8
_TOP_SHARE = 0.01
_TOP_MIN = 9
#: Block probability from which a block is counted as flagged in the details.
FLAG_LEVEL = 0.5
#: Folder of fold models for leave-one-dataset-out evaluation (unset in production).
FOLDS_ENV = "FORENSICS_DEEP_SCAN_FOLDS"


def image_statistic(prob: np.ndarray) -> float:
    """Mean of the top 1 % (at least nine) of the 3x3-smoothed block probabilities."""
    smoothed = box3(prob.astype(np.float32)) / 3.0
    flat = np.sort(smoothed.ravel())
    k = min(flat.size, max(_TOP_MIN, int(round(_TOP_SHARE * flat.size))))
    return float(flat[-k:].mean())


def _dihedral(features: np.ndarray) -> list[tuple[np.ndarray, Any]]:
    """The eight flips/transposes of a (C, H, W) map, each with the function that undoes it on (H, W)."""
    views = []
    for transpose in (False, True):
        base = features.transpose(0, 2, 1) if transpose else features
        for flip_rows in (False, True):
            for flip_cols in (False, True):
                view = base[:, ::-1] if flip_rows else base
                view = view[:, :, ::-1] if flip_cols else view

                def undo(p: np.ndarray, fr: bool = flip_rows, fc: bool = flip_cols, t: bool = transpose) -> np.ndarray:
                    p = p[::-1] if fr else p
                    p = p[:, ::-1] if fc else p
                    return p.T if t else p

                views.append((np.ascontiguousarray(view), undo))
    return views


class DeepScan(Method):
    name: ClassVar[str] = "deep_scan"
    version: ClassVar[str] = VERSION
    cost_seconds: ClassVar[float] = 0.56
    default_logistic: ClassVar[Logistic] = Logistic(center=0.5, scale=0.08)
    uses_dataset_data: ClassVar[bool] = True
    #: Where the model is read from (a test points it at a damaged copy).
    models_dir: Path = MODELS_DIR

    def statistic_excluding(self, details: Mapping[str, Any], excluded: frozenset[str]) -> float:
        """The statistic of the fold model trained without the held-out ``excluded`` training source."""
        seen = excluded & _data_sources(self.models_dir)
        if not seen:
            return float(details["statistic"])
        folds = details.get("fold_statistics") or {}
        if (key := fold_name(seen)) not in folds:
            raise ValueError(f"the deep scan model was trained on {sorted(seen)}: run the evaluation with {FOLDS_ENV} set to fold models")
        return float(folds[key])

    def examine(self, image: DecodedImage) -> Finding:
        return self.examine_with(image, AnalysisOptions())

    def examine_with(self, image: DecodedImage, options: AnalysisOptions) -> Finding:
        rows, cols = image.height // BLOCK, image.width // BLOCK
        if min(rows, cols) < MIN_BLOCKS:
            return self.not_applicable(
                f"The image is {image.width}x{image.height} px; the deep scan needs at least {MIN_BLOCKS * BLOCK} px on each side."
            )
        try:
            model = load_model(MODEL, self.models_dir)
        except ModelUnavailable as exc:
            return self.error(f"The deep scan model is unavailable: {exc}.")
        sensitivity = options.sensitivity
        features = block_features(image, with_history=sensitivity is not Sensitivity.FAST).values
        if sensitivity is Sensitivity.THOROUGH:
            factor = 1
            views = _dihedral(features)
        else:
            factor = pool_factor(rows, cols)
            views = [(pooled(features, factor), lambda p: p)]
        prob = _probability(model, views)
        statistic = image_statistic(prob)
        rows, cols = prob.shape
        flagged = float((prob >= FLAG_LEVEL).mean())
        details = {
            "sensitivity": sensitivity.value,
            "passes": len(views),
            "model": {"name": MODEL, "version": model.version, "sha256": model.card["sha256"][:16]},
            "cells": [rows, cols],
            "cell_pixels": BLOCK * factor,
            "channels": list(CHANNELS),
            "top_share_mean_probability": round(statistic, 4),
            "share_of_blocks_flagged": round(flagged, 4),
            "flag_level": FLAG_LEVEL,
        }
        if folds := os.environ.get(FOLDS_ENV):
            details["fold_statistics"] = {
                fold.name: round(image_statistic(_probability(load_model(MODEL, fold), views)), 6)
                for fold in sorted(Path(folds).iterdir())
                if (fold / f"{MODEL}.onnx").exists()
            }
        finding = self.ok(statistic, "", "", details, heatmap=prob)
        label, summary = _describe(finding.score or 0.0, flagged, sensitivity)
        return replace(finding, label=label, summary=summary)


def fold_name(excluded: frozenset[str] | set[str]) -> str:
    """The folder name of the fold model trained without the ``excluded`` datasets (``a+b``)."""
    return "+".join(sorted(excluded))


def _probability(model: OnnxModel, views: list[tuple[np.ndarray, Any]]) -> np.ndarray:
    """The block probability map: the network's sigmoid, averaged over the views (each undone)."""
    prob: np.ndarray | None = None
    for view, undo in views:
        logits = model.run(features=view[None])[0][0, 0]
        p = undo(expit(logits))
        prob = p if prob is None else prob + p
    assert prob is not None
    return (prob / len(views)).astype(np.float32)


@cache
def _data_sources(folder: Path) -> frozenset[str]:
    """The datasets whose photos trained the model in ``folder`` (its card's ``data_sources``)."""
    try:
        return frozenset(json.loads(card_path(MODEL, folder).read_text()).get("data_sources", ()))
    except (OSError, ValueError):
        return frozenset()


def _describe(score: float, flagged: float, sensitivity: Sensitivity) -> tuple[str, str]:
    where = f"{flagged:.1%} of the image's blocks are above {FLAG_LEVEL:.0%}" if flagged > 0 else "no block is above 50 %"
    if score >= 50:
        return (
            "suspicious regions",
            f"The learned localizer ({sensitivity.value} scan) marks regions whose traces differ from the rest: {where}. "
            "A sharp subject against a plain or defocused background can stand out to it as well; weigh its map with the other methods'.",
        )
    return "no suspicious region", f"The learned localizer ({sensitivity.value} scan) found no region whose traces stand out: {where}."
