"""Indicators that an image was made (wholly or partly) by a generative AI model.

Two kinds of evidence, of very different strength:

*Metadata* (strong when present, trivially stripped, so its absence means nothing):
C2PA manifests whose actions declare the IPTC digital source type
``trainedAlgorithmicMedia`` or ``compositeWithTrainedAlgorithmicMedia`` (read and validated
offline, see :mod:`forensics.provenance`); the same terms, or ``AISystemUsed``, in XMP;
generator parameters in text chunks or EXIF UserComment (AUTOMATIC1111 ``parameters``,
ComfyUI ``prompt``/``workflow``, InvokeAI, NovelAI, ``Dream``, ``sd-metadata``); and
Software/Make/CreatorTool/claim-generator names of generators (DALL-E, Midjourney, Stable
Diffusion, Firefly, NovelAI, Imagen, ...).

*Pixels* (learned, bounded): a linear probe on frozen CLIP ViT-B/16 image embeddings (A.
Radford et al., "Learning transferable visual models from natural language supervision",
ICML 2021; the probe after U. Ojha, Y. Li, Y. J. Lee, "Towards universal fake image detectors
that generalize across generative models", CVPR 2023): :mod:`forensics.learn.clip_encoder`
embeds the shorter-side-224 px centre crop, so every image reaches the encoder at one size,
and the head ``forensics/models/ai_pixels.onnx`` (trained by ``python -m training
ai_pixels``; its card holds the leave-one-generator-out figures) turns the embedding into a
logit. Pixel points are ``CENTER + SCALE * (logit - line)``, clipped to ``[0, PIXEL_CAP]``,
where ``line`` is the card's decision line (the 99th percentile of the logit on the genuine
training photos): with no metadata the score is the probe's odds relative to its line, 50 at
the line, and at most :data:`PIXEL_SCORE_CAP` however sure the probe is. The probe was trained
on four generators of 2021-2022 and a few hundred genuine photos: it is evidence, not proof,
so pixels alone never reach the top of the scale, and any metadata signal (60+ points) outranks
it in the label and the summary. Images under :data:`clip_encoder.MIN_SIDE` px a side are not
applicable for the pixel part. When the encoder or the head is missing or corrupt, the pixel part is
recorded as unavailable (in the details and the summary) and the metadata part still gives
the finding: the method does not fail for a missing model, it says what it could not measure.

The statistic is the sum of the strongest metadata evidence points and the bounded pixel
points; every term is listed in ``details``.
"""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.learn import clip_encoder
from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model
from forensics.methods.base import Method
from forensics.provenance import (
    AI_COMPOSITE_SOURCE_TYPES,
    AI_GENERATED_SOURCE_TYPES,
    C2paReport,
    XmpFacts,
    read_c2pa,
    xmp_facts,
)
from forensics.tags import FileMetadata

CENTER = 50.0
SCALE = 10.0
#: Highest score the pixel probe alone can give (no metadata): above the 50 line, below certainty.
PIXEL_SCORE_CAP = 80.0
#: Pixel points at most: CENTER + SCALE * ln(80/20) gives a score of 80 with no metadata.
PIXEL_CAP = CENTER + SCALE * math.log(PIXEL_SCORE_CAP / (100.0 - PIXEL_SCORE_CAP))
#: The head ``forensics/models/<MODEL>.onnx`` and its card (which holds the line).
MODEL = "ai_pixels"

#: Evidence points per metadata signal (larger = stronger); only the strongest counts.
POINTS = {
    "c2pa_ai_generated": 100.0,
    "c2pa_ai_composite": 90.0,
    "c2pa_ai_generated_invalid": 75.0,
    "c2pa_ai_composite_invalid": 70.0,
    "c2pa_generator_name": 80.0,
    "c2pa_generator_name_invalid": 65.0,
    "xmp_ai_generated": 90.0,
    "xmp_ai_composite": 80.0,
    "xmp_ai_system": 85.0,
    "generator_parameters": 90.0,
    "generator_name": 80.0,
}

_GENERATOR_NAMES = re.compile(
    r"dall[\s\-·.]?e|midjourney|stable[\s\-_]?diffusion|\bsdxl\b|stability\s?ai|dreamstudio|firefly|novelai"
    r"|google\s+imagen|\bimagen\s?[1-9]|\bgemini\b|openai|chatgpt|gpt-4o|bing\s+image\s+creator|image\s+creator"
    r"|microsoft\s+designer|comfyui|automatic1111|\binvokeai\b|fooocus|leonardo\.?ai|ideogram|\bflux\.1"
    r"|black\s?forest\s?labs|kandinsky|deepfloyd|craiyon|nightcafe|playground\s?ai|runway\s?ml|\bsora\b"
    r"|meta\s+ai|grok|\bdiffusers\b",
    re.IGNORECASE,
)
#: PNG/WebP text keys written by generation front-ends (value checked where keys are generic).
_GENERATOR_KEYS = {"parameters", "prompt", "workflow", "dream", "sd-metadata", "invokeai_metadata", "invokeai_graph"}
_A1111_PARAMS = re.compile(r"\bSteps:\s*\d+.*\b(Sampler|CFG scale|Seed):", re.IGNORECASE | re.DOTALL)
_EXIF_TEXT_TAGS = ("Software", "Make", "Model", "Artist", "ImageDescription")
#: exiv2 opens a UserComment with its character code (``charset=Ascii ...``).
_COMMENT_CHARSET = re.compile(r"^charset=\w+ ?")


class AiGenerated(Method):
    name: ClassVar[str] = "ai_generated"
    joins_fusion: ClassVar[bool] = False
    reads_clip_embedding: ClassVar[bool] = True
    version: ClassVar[str] = "2.0"
    cost_seconds: ClassVar[float] = 0.35  # the CLIP forward pass, whose features recapture reads after it
    default_logistic: ClassVar[Logistic] = Logistic(center=CENTER, scale=SCALE)
    fit_logistic: ClassVar[bool] = False

    def __init__(self, models: Path = MODELS_DIR) -> None:
        #: Folder of the head's ONNX file and card (a test points it elsewhere).
        self.models = models

    def examine(self, image: DecodedImage) -> Finding:
        c2pa_report = read_c2pa(image.data, image.format)
        xmp = xmp_facts(image.metadata)
        exif = _exif_texts(image.metadata)
        evidence = _c2pa_evidence(c2pa_report) + _xmp_evidence(xmp) + _text_evidence(image.text, exif)
        metadata_points = max((e["points"] for e in evidence), default=0.0)

        probe = _pixel_probe(image, self.models)
        pixel_points = probe.get("points", 0.0)
        statistic = metadata_points + pixel_points

        label, summary = _verdict(evidence, probe, c2pa_report)
        details: dict[str, Any] = {
            "evidence": evidence,
            "metadata_points": metadata_points,
            "pixel_points": round(pixel_points, 2),
            "pixel_points_cap": round(PIXEL_CAP, 2),
            "pixel_probe": probe,
            "pixel_probe_caveat": (
                "A linear probe on frozen CLIP ViT-B/16 embeddings (Ojha et al., CVPR 2023), trained on four text-to-image "
                "generators of 2021-2022 (Disco Diffusion, DALL-E mini, GLID-3, Stable Diffusion 1.4) and a few hundred genuine "
                "photos; newer generators are not in its data. It is evidence, not proof: pixels alone score at most "
                f"{PIXEL_SCORE_CAP:.0f}, and metadata signals take precedence."
            ),
            "c2pa": c2pa_report.to_dict(),
            "xmp": xmp.to_dict(),
            "exif_text": exif,
            "missing_manifest_reference": _dangling_reference(c2pa_report, xmp),
        }
        return self.ok(statistic, label, summary, details)


def _c2pa_evidence(report: C2paReport) -> list[dict[str, Any]]:
    if not report.present or not report.manifests:
        return []
    valid = report.signature_valid
    suffix = "" if valid else "_invalid"
    trust = (
        "signature valid, signer not on a trust list"
        if valid and report.untrusted_signer
        else "signature valid" if valid else f"manifest INVALID ({', '.join(report.failures) or report.validation_state})"
    )
    evidence: list[dict[str, Any]] = []
    for manifest in report.manifests:
        where = "active manifest" if manifest.active else "ingredient manifest"
        for source in manifest.source_types:
            kind = "ai_generated" if source in AI_GENERATED_SOURCE_TYPES else "ai_composite" if source in AI_COMPOSITE_SOURCE_TYPES else None
            if kind == "ai_generated" and not manifest.active:
                kind = "ai_composite"  # an AI-made ingredient went into the image: partly AI
            if kind:
                evidence.append(
                    {"signal": f"c2pa_{kind}{suffix}", "points": POINTS[f"c2pa_{kind}{suffix}"],
                     "text": f"C2PA {where} declares digital source type {source} ({trust})"}
                )
        names = [n for n in manifest.generators + manifest.software_agents if _GENERATOR_NAMES.search(n)]
        if names:
            evidence.append(
                {"signal": f"c2pa_generator_name{suffix}", "points": POINTS[f"c2pa_generator_name{suffix}"],
                 "text": f"C2PA {where} names a generative AI tool: {', '.join(names)} ({trust})"}
            )
    return evidence


def _xmp_evidence(xmp: XmpFacts) -> list[dict[str, Any]]:
    evidence: list[dict[str, Any]] = []
    for source in xmp.source_types:
        if source in AI_GENERATED_SOURCE_TYPES or source in AI_COMPOSITE_SOURCE_TYPES:
            kind = "xmp_ai_generated" if source in AI_GENERATED_SOURCE_TYPES else "xmp_ai_composite"
            evidence.append({"signal": kind, "points": POINTS[kind], "text": f"XMP (unsigned) declares digital source type {source}"})
    if xmp.ai_systems:
        evidence.append(
            {"signal": "xmp_ai_system", "points": POINTS["xmp_ai_system"], "text": f"XMP (unsigned) names the AI system used: {', '.join(xmp.ai_systems)}"}
        )
    tools = [t for t in xmp.creator_tools if _GENERATOR_NAMES.search(t)]
    if tools:
        evidence.append({"signal": "generator_name", "points": POINTS["generator_name"], "text": f"XMP CreatorTool names a generator: {', '.join(tools)}"})
    return evidence


def _text_evidence(text: Mapping[str, str], exif: Mapping[str, str]) -> list[dict[str, Any]]:
    evidence: list[dict[str, Any]] = []
    keys = [k for k in text if k.lower() in _GENERATOR_KEYS]
    params = [k for k in keys if k.lower() != "prompt" or text[k].lstrip().startswith("{")]
    comment = exif.get("UserComment", "")
    if _A1111_PARAMS.search(comment):
        params.append("EXIF UserComment")
    if params:
        evidence.append(
            {"signal": "generator_parameters", "points": POINTS["generator_parameters"],
             "text": f"generation parameters stored in {', '.join(params)} (written by Stable Diffusion front-ends)"}
        )
    named = {k: v for k, v in {**{f"text:{k}": v for k, v in text.items() if "xmpmeta" not in v}, **exif}.items() if _GENERATOR_NAMES.search(v[:2000])}
    if named:
        shown = "; ".join(f"{k}={v[:60]!r}" for k, v in list(named.items())[:4])
        evidence.append({"signal": "generator_name", "points": POINTS["generator_name"], "text": f"metadata names a generator: {shown}"})
    return evidence


def _exif_texts(metadata: FileMetadata) -> dict[str, str]:
    """Software/Make/Model/Artist/ImageDescription and UserComment, as text."""
    out = {name: metadata.exif.get(f"Exif.Image.{name}", "").strip("\x00 ") for name in _EXIF_TEXT_TAGS}
    out["UserComment"] = _COMMENT_CHARSET.sub("", metadata.exif.get("Exif.Photo.UserComment", "")).strip("\x00 ")
    return {k: v for k, v in out.items() if v}


def _dangling_reference(report: C2paReport, xmp: XmpFacts) -> bool:
    """XMP points at an embedded C2PA claim but no manifest store is there (it was stripped or damaged)."""
    return not report.present and any(u.startswith("self#jumbf") for u in xmp.provenance_urls)


def _pixel_probe(image: DecodedImage, models: Path) -> dict[str, Any]:
    """The learned pixel part: status ``ok`` with its points, ``not applicable`` or ``unavailable`` with the reason."""
    if min(image.width, image.height) < clip_encoder.MIN_SIDE:
        return {
            "status": "not applicable",
            "reason": f"the image is {image.width}x{image.height} px; the pixel probe needs at least {clip_encoder.MIN_SIDE} px on each side",
        }
    try:
        head = load_model(MODEL, models)
        embedding = clip_encoder.embedding_of(clip_encoder.embed_image(image))
    except ModelUnavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    logit = float(np.asarray(head.run(embedding=embedding[None])[0]).ravel()[0])
    line = float(head.card["line"])
    points = float(np.clip(CENTER + SCALE * (logit - line), 0.0, PIXEL_CAP))
    return {
        "status": "ok",
        "points": points,
        "probability": round(float(expit(logit)), 4),
        "logit": round(logit, 4),
        "line": round(line, 4),
        "line_probability": round(float(expit(line)), 4),
        "above_line": logit > line,
        "model": {"name": MODEL, "version": head.version, "sha256": str(head.card["sha256"])[:16]},
        "encoder": {"id": clip_encoder.ENCODER_ID, "revision": clip_encoder.ENCODER_REVISION, "sha256": clip_encoder.ENCODER_SHA256[:16]},
    }


def _verdict(evidence: list[dict[str, Any]], probe: Mapping[str, Any], c2pa_report: C2paReport) -> tuple[str, str]:
    if evidence:
        strongest = max(evidence, key=lambda e: e["points"])
        label = "AI-generated per metadata" if "generated" in strongest["signal"] or "parameters" in strongest["signal"] else "AI involvement per metadata"
        others = f" (and {len(evidence) - 1} more metadata signal(s))" if len(evidence) > 1 else ""
        pixels = "" if probe["status"] == "ok" else f" The pixel probe was {probe['status']}: {probe['reason']}."
        return label, f"Metadata indicates generative AI: {strongest['text']}{others}.{pixels}"
    if probe["status"] == "ok" and probe["above_line"]:
        return (
            "AI-like pixels (learned probe)",
            f"No AI metadata; the learned pixel probe gives probability {probe['probability']:.2f}, above its line "
            f"({probe['line_probability']:.2f}): the pixels resemble those of the text-to-image generators it was trained on. "
            f"It is evidence, not proof (pixels alone score at most {PIXEL_SCORE_CAP:.0f}).",
        )
    if probe["status"] == "ok":
        pixel_note = f"the learned pixel probe stays below its line (probability {probe['probability']:.2f}, line {probe['line_probability']:.2f})"
    else:
        pixel_note = f"the pixel probe was {probe['status']} ({probe['reason']})"
    if c2pa_report.remote_url:
        found = "No AI-generation metadata was found (the C2PA manifest is stored remotely and was not fetched)"
    elif c2pa_report.error:
        found = "No AI-generation metadata was found (a C2PA manifest is present but unreadable)"
    elif c2pa_report.present:
        found = f"A C2PA manifest is present (validation: {c2pa_report.validation_state}) but declares no generative-AI source"
    else:
        found = "No AI-generation metadata was found"
    return "no AI indicators", f"{found} and {pixel_note}; metadata is easily stripped, so this does not show the image is camera-made."
