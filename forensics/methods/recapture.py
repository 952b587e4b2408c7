"""Recapture ("photo of a photo"): a learned detector of photographs of screens and prints.

A photo of a screen or of a print carries traces of the second capture at the pixel scale:
moire from the camera sampling the screen's sub-pixel grid again (Cao & Kot, "Identification
of recaptured photographs on LCD screens", ICASSP 2010), halftone dots and blurred fine
detail of a print (Tan et al., ECCV 2010, the NUAA print-attack set), changed edge profiles
and specular glare (Thongkamwitoon, Muammar & Dragotti, IEEE TIFS 10(5), 2015). A small CNN
(``training/recapture.py``) scores full-resolution patches cut from a grid over the image
(:mod:`forensics.learn.recapture_input`, never resized, so those traces survive), and the
statistic is the mean patch logit.

The decision line is the 99th percentile of the statistic on the authentic training images
(the card's ``line``); what the model measured is reported, not a reason it cannot know: the
patch logits, how many patches lean each way, and where they were cut.
"""

from pathlib import Path
from typing import ClassVar

import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.learn.recapture_input import MIN_PATCHES, PATCH, minimum_side, prepare
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model
from forensics.methods.base import Method

VERSION = "1.0"
MODEL = "recapture"
#: The decision line: ``line`` of forensics/models/recapture.json (99th percentile of the mean
#: patch logit on the authentic training images of the shipped model); a test checks they agree.
LINE = 0.362
#: Logit units per factor e of the score's odds: the held-out statistics of the two classes lie
#: several units apart, so one unit maps the line +- 1 to scores of about 27 and 73.
SCALE = 1.0


class Recapture(Method):
    name: ClassVar[str] = "recapture"
    joins_fusion: ClassVar[bool] = False
    version: ClassVar[str] = VERSION
    default_logistic: ClassVar[Logistic] = Logistic(center=LINE, scale=SCALE)

    def __init__(self, models: Path = MODELS_DIR) -> None:
        #: Folder of the ONNX file and its card (a test points it at a corrupted copy).
        self.models = models

    def examine(self, image: DecodedImage) -> Finding:
        if min(image.width, image.height) < minimum_side():
            return self.not_applicable(
                f"The image is {image.width}x{image.height} px; the recapture model reads {PATCH} px patches at full resolution "
                f"and needs at least {minimum_side()} px on each side ({MIN_PATCHES} patches)."
            )
        try:
            model = load_model(MODEL, self.models)
        except ModelUnavailable as exc:
            return self.error(f"The recapture model is unavailable: {exc}.")
        x = prepare(image.rgb)
        logits = np.asarray(model.run(patches=x.patches)[0], np.float64).ravel()
        statistic = float(logits.mean())
        line = self.logistic.center
        above = int((logits > line).sum())
        details = {
            "model": {"name": MODEL, "version": model.version, "sha256": model.card["sha256"][:16]},
            "patch_size": PATCH,
            "patches_used": len(logits),
            "candidate_grid": list(x.grid),
            "patch_logits": {
                "mean": round(statistic, 4),
                "median": round(float(np.median(logits)), 4),
                "min": round(float(logits.min()), 4),
                "max": round(float(logits.max()), 4),
            },
            "patches_above_line": above,
            "line": line,
            "patch_corners": x.corners.tolist(),
        }
        label, summary = _describe(statistic, line, above, len(logits))
        return self.ok(statistic, label, summary, details, heatmap=_patch_map(image, x.corners, logits))


def _patch_map(image: DecodedImage, corners: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """A coarse map (one cell per patch) of the patch probabilities; cells not read are 0."""
    rows, cols = max(1, image.height // PATCH), max(1, image.width // PATCH)
    out = np.zeros((rows, cols), np.float32)
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))
    for (r, c), p in zip(corners, prob, strict=True):
        out[min(rows - 1, int(r) // PATCH), min(cols - 1, int(c) // PATCH)] = p
    return out


def _describe(statistic: float, line: float, above: int, total: int) -> tuple[str, str]:
    share = f"{above} of {total} patches read lean towards a recapture"
    if statistic > line:
        return (
            "looks recaptured",
            "The texture at the pixel scale looks like a photograph of a screen or print (the learned model, trained on moire, "
            f"screen-grid, glare and print-texture examples, scores it above its line): {share}.",
        )
    return "no sign of recapture", f"The texture at the pixel scale looks like a direct camera photo to the learned model: {share}."
