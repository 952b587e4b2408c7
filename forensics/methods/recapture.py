"""Recapture ("photo of a photo"): a learned detector of photographs of screens and prints.

A photo of a screen or of a print shows what the second capture added to the whole picture: a
bezel or paper edge, a screen's glow and colour cast, glare on glass or gloss paper, the flat
perspective of a rectangle filling the frame, coarse moire bands (Cao & Kot, "Identification of
recaptured photographs on LCD screens", ICASSP 2010; Thongkamwitoon, Muammar & Dragotti, IEEE
TIFS 10(5), 2015). A logistic head (``training/recapture.py``) reads these from the class token
of the last layer of the frozen CLIP ViT-B/16 encoder, from the forward pass whose projected
embedding the AI-generated probe reads (:func:`clip_encoder.embed_image`, computed once per
image). The pixel-scale traces themselves (the screen grid, halftone dots)
do not survive the encoder's 224-px input, nor a messaging app's downscaled re-save; held out,
a network on those traces ranked one contributor's recaptures at chance for that reason.

The decision line is the higher of the 99th percentiles of the logit on the authentic training
images and on the phone photos of real scenes among them, the negatives most like a recapture,
each logit from a head fitted without that image (cross-fitted: a head's logits on its own
training photos are too low to set a line for photos it has not seen; the card's ``line``); the
finding reports the logit, its probability and the line.
"""

from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.special import expit

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.learn import clip_encoder
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model
from forensics.methods.base import Method

VERSION = "3.1"
MODEL = "recapture"
#: The decision line: ``line`` of forensics/models/recapture.json (the higher of the 99th
#: percentiles of the cross-fitted logit on all authentic training images and on the phone
#: photos of real scenes among them); a test checks they agree.
LINE = 0.137
#: Logit units per factor e of the score's odds: held out, the classes' mean logits lie 0.75-1.25
#: units apart (per contributor or NUAA subject), so a quarter unit maps the line +- 0.25 to
#: scores of about 27 and 73.
SCALE = 0.25


class Recapture(Method):
    name: ClassVar[str] = "recapture"
    joins_fusion: ClassVar[bool] = False
    reads_clip_embedding: ClassVar[bool] = True
    version: ClassVar[str] = VERSION
    cost_seconds: ClassVar[float] = 0.06  # its head; the CLIP features come from ai_generated's pass
    default_logistic: ClassVar[Logistic] = Logistic(center=LINE, scale=SCALE)

    def __init__(self, models: Path = MODELS_DIR) -> None:
        #: Folder of the ONNX file and its card (a test points it at a corrupted copy).
        self.models = models

    def examine(self, image: DecodedImage) -> Finding:
        if min(image.width, image.height) < clip_encoder.MIN_SIDE:
            return self.not_applicable(
                f"The image is {image.width}x{image.height} px; the recapture model reads its centre square at 224 px "
                f"and needs at least {clip_encoder.MIN_SIDE} px on each side."
            )
        try:
            head = load_model(MODEL, self.models)
            token = clip_encoder.class_token_of(clip_encoder.embed_image(image))
        except ModelUnavailable as exc:
            return self.error(f"The recapture model is unavailable: {exc}.")
        logit = float(np.asarray(head.run(class_token=token[None])[0]).ravel()[0])
        line = self.logistic.center
        details = {
            "model": {"name": MODEL, "version": head.version, "sha256": str(head.card["sha256"])[:16]},
            "encoder": {"id": clip_encoder.ENCODER_ID, "sha256": clip_encoder.ENCODER_SHA256[:16]},
            "logit": round(logit, 4),
            "probability": round(float(expit(logit)), 4),
            "line": line,
        }
        label, summary = _describe(logit, line)
        return self.ok(logit, label, summary, details)


def _describe(logit: float, line: float) -> tuple[str, str]:
    if logit > line:
        return (
            "looks recaptured",
            "The picture looks like a photograph of a screen or a print to the learned model (trained on photos of laptop, "
            f"monitor, TV and phone screens and of prints): its logit {logit:.2f} is above its line {line:.2f}. A direct "
            "photo of printed matter or of a screen filling the frame (a cover, a page, a poster) reads the same way to it.",
        )
    return (
        "no sign of recapture",
        f"The picture looks like a direct camera photo to the learned model (logit {logit:.2f}, line {line:.2f}).",
    )
