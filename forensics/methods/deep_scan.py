"""Deep scan: a learned per-pixel localizer of splices, retouching and resampled pastes.

A compact fully convolutional network (``training/deep_scan.py``) reads, per 8x8 block, the
noise-residual, DCT, blocking-grid and double-quantization traces of
:mod:`forensics.learn.block_features` and predicts the share of the block that was edited.
Its design follows the learned localizers that read traces rather than content: the
noise stream of Zhou, Han, Morariu & Davis ("Learning rich features for image manipulation
detection", CVPR 2018), the anomaly-against-surround idea of ManTra-Net (Wu, AbdAlmageed &
Natarajan, CVPR 2019) and the DCT stream of CAT-Net (Kwon et al., IJCV 2022); the network is
small so that it runs on the CPU through onnxruntime.

Sensitivities: ``fast`` leaves out the double-quantization channel (the costly one; the
network was trained with it missing a fifth of the time), ``default`` uses every channel
once, ``thorough`` also averages the network over the eight flips and transposes of the block
map (test-time augmentation), which steadies faint evidence at eight times the network's cost.

The statistic is the mean probability of the most suspicious 1 % of blocks (at least nine)
after 3x3 smoothing: one isolated block does not make a region. The heatmap is the block
probability map.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.jpeg_history import box3
from forensics.learn.block_features import BLOCK, CHANNELS, block_features
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model
from forensics.methods.base import Method
from forensics.options import AnalysisOptions, Sensitivity

VERSION = "1.0"
MODEL = "deep_scan"
#: Blocks on the shorter side below which there is too little image to compare regions.
MIN_BLOCKS = 8
_TOP_SHARE = 0.01
_TOP_MIN = 9
#: Block probability from which a block is counted as flagged in the details.
FLAG_LEVEL = 0.5


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
    default_logistic: ClassVar[Logistic] = Logistic(center=0.5, scale=0.08)
    #: Where the model is read from (a test points it at a damaged copy).
    models_dir: Path = MODELS_DIR

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
            views = _dihedral(features)
        else:
            views = [(features, lambda p: p)]
        prob = np.zeros((rows, cols), np.float32)
        for view, undo in views:
            logits = model.run(features=view[None])[0][0, 0]
            prob += undo(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0))))
        prob /= len(views)
        statistic = image_statistic(prob)
        flagged = float((prob >= FLAG_LEVEL).mean())
        details = {
            "sensitivity": sensitivity.value,
            "passes": len(views),
            "model": {"name": MODEL, "version": model.version, "sha256": model.card["sha256"][:16]},
            "blocks": [rows, cols],
            "channels": list(CHANNELS),
            "top_share_mean_probability": round(statistic, 4),
            "share_of_blocks_flagged": round(flagged, 4),
            "flag_level": FLAG_LEVEL,
        }
        finding = self.ok(statistic, "", "", details, heatmap=prob)
        label, summary = _describe(finding.score or 0.0, flagged, sensitivity)
        return replace(finding, label=label, summary=summary)


def _describe(score: float, flagged: float, sensitivity: Sensitivity) -> tuple[str, str]:
    where = f"{flagged:.1%} of the image's blocks are above {FLAG_LEVEL:.0%}" if flagged > 0 else "no block is above 50 %"
    if score >= 50:
        return (
            "suspicious regions",
            f"The learned localizer ({sensitivity.value} scan) marks regions whose traces differ from the rest: {where}.",
        )
    return "no suspicious region", f"The learned localizer ({sensitivity.value} scan) found no region whose traces stand out: {where}."
