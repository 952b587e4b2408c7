"""Train the ``ai_pixels`` head: a linear probe on frozen CLIP ViT-B/16 embeddings.

Following Ojha, Li & Lee ("Towards universal fake image detectors that generalize across
generative models", CVPR 2023), only a logistic-regression head on the frozen encoder is fitted
(:mod:`training.probe`): a linear read-out of a representation that was never trained on any
generator has little room to memorise one generator's artefacts.

Data (../shared/data): generated images of four generators, Disco Diffusion, DALL-E mini and
GLID-3 (``imagen_gallery``, the folder in the file name) and Stable Diffusion 1.4
(``cifake_subset`` ai, 32x32); genuine photos: ``cifake_subset`` authentic, the camera and
phone originals (``dresden_natural``, ``recapture_phone`` authentic, ``exif_samples_ianare``
authentic JPEGs, ``mapo80_exif_spoof`` authentic) and the authentic rows of ``noso_copymove``,
``cvip_copymove``, ``casia2_samples``, ``comofod_subset`` and ``nuaa_print_attack``. CIFAKE is
subsampled (:data:`CIFAKE_PER_CLASS` per class, seeded) so that 4000 thumbnails do not dominate.
Every image is decoded by the engine's own :func:`forensics.image.load_image`. The generated
PNGs of ``imagen_gallery`` are also added once more re-saved as JPEG (quality drawn from 70 to
95), so that "PNG" cannot stand in for "generated": the genuine photos are mostly JPEG.

Evaluation is leave-one-generator-out: each fold trains without one generator and without a
share of the genuine datasets (:data:`FOLDS`, whole datasets, so the held-out negatives share
no camera or source with training), then reports the held-out generator's ROC AUC against the
held-out genuine photos (as stored, and with the generated images re-saved as JPEG), and the
false-alarm rate on the held-out camera/phone originals at the fold's line: the
:data:`LINE_QUANTILE` quantile of the logit on the fold's *training* genuine photos (about 1 %
false alarms there). A check prints how well pixel count and "is PNG" alone separate generated
from genuine on the same data. The shipped head is then fitted on everything, its line chosen
the same way, and exported with :func:`training.probe.export_head`.
"""

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from forensics.dataset import read_index, source_group
from forensics.evaluation import format_auc, format_rate, roc_auc
from forensics.learn import clip_encoder
from training import probe
from training.common import RunSettings, seed_everything

NAME = "ai_pixels"
#: Bumped when the data, the encoder or the head changes (cache key and card version).
VERSION = "1.0"
GENERATORS = ("disco", "dmin", "glid3", "sd14")
GENERATOR_NAMES = {"disco": "Disco Diffusion", "dmin": "DALL-E mini", "glid3": "GLID-3", "sd14": "Stable Diffusion 1.4 (CIFAKE)"}
CAMERA_SETS = ("dresden_natural", "recapture_phone", "exif_samples_ianare", "mapo80_exif_spoof")
OTHER_GENUINE = ("noso_copymove", "cvip_copymove", "casia2_samples", "comofod_subset", "nuaa_print_attack")
#: Per fold: the generator left out and the genuine datasets held out with it (each camera set once).
FOLDS = {
    "disco": ("dresden_natural", "noso_copymove", "nuaa_print_attack"),
    "dmin": ("recapture_phone", "cvip_copymove"),
    "glid3": ("exif_samples_ianare", "casia2_samples"),
    "sd14": ("mapo80_exif_spoof", "comofod_subset", "cifake_real"),
}
#: CIFAKE images per class: CIFAKE_DRAW drawn (seeded), the first CIFAKE_PER_CLASS of them by file name kept.
CIFAKE_DRAW = 300
CIFAKE_PER_CLASS = 150
#: Quantile of the training genuine photos' logits that sets the decision line (about 1 % false alarms there).
LINE_QUANTILE = 0.99
JPEG_QUALITIES = (70, 95)
#: Per preset: images per group (None: all; CIFAKE_PER_CLASS per CIFAKE class).
PRESETS: dict[str, int | None] = {"default": None, "tiny": 2}


@dataclass(frozen=True, slots=True)
class Item:
    """One image as the probe sees it: cache key, group (generator or genuine dataset), label, size, format."""

    key: str
    path: Path
    group: str
    ai: bool
    jpeg_quality: int | None = None


def _items(settings: RunSettings) -> list[Item]:
    per_group = PRESETS[settings.size]
    rng = np.random.default_rng(settings.seed)
    items: list[Item] = []
    gallery = [s for s in read_index(settings.data / "imagen_gallery") if s.label == "ai"]
    for generator in GENERATORS[:3]:
        chosen = sorted((s for s in gallery if s.path.parent.name == generator), key=lambda s: s.path.name)[:per_group]
        for s in chosen:
            items.append(Item(f"imagen_gallery/{generator}/{s.path.name}", s.path, generator, True))
            quality = int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1))
            items.append(Item(f"imagen_gallery/{generator}/{s.path.name}#q{quality}", s.path, generator, True, quality))
    cifake = read_index(settings.data / "cifake_subset")
    for label, group in (("ai", "sd14"), ("authentic", "cifake_real")):
        rows = sorted((s for s in cifake if s.label == label), key=lambda s: s.path.name)
        drawn = np.sort(rng.choice(len(rows), size=min(CIFAKE_DRAW, len(rows)), replace=False))
        items += [Item(f"cifake_subset/{rows[i].path.name}", rows[i].path, group, label == "ai") for i in drawn[: per_group or CIFAKE_PER_CLASS]]
    for dataset in CAMERA_SETS + OTHER_GENUINE:
        rows = [s for s in read_index(settings.data / dataset) if s.label == "authentic"]
        if dataset == "exif_samples_ianare":
            rows = [s for s in rows if s.suffix in {".jpg", ".jpeg"}]
        rows = sorted(rows, key=lambda s: s.path.name)[:per_group]
        items += [Item(f"{dataset}/{s.path.name}", s.path, dataset, False) for s in rows]
    return items


def _bytes_of(item: Item) -> bytes:
    data = item.path.read_bytes()
    if item.jpeg_quality is None:
        return data
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=item.jpeg_quality)
    return buffer.getvalue()


def embeddings(items: list[Item], settings: RunSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Item]]:
    """Embeddings, pixel counts and is-PNG flags of the items the engine decodes (cached per file on disk)."""
    sources = [probe.Source(i.key, i.path.name, lambda i=i: _bytes_of(i)) for i in items]
    x, pixels, png, kept = probe.embeddings(sources, settings.work / f"{NAME}_embeddings_{clip_encoder.ENCODER_SHA256[:12]}.npz")
    return clip_encoder.embedding_of(x), pixels, png, [items[k] for k in kept]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _too_small(item: Item) -> bool:
    """Whether the image is under the probe's minimum side, where the method reports "not applicable"."""
    with Image.open(item.path) as image:
        return min(image.size) < clip_encoder.MIN_SIDE


def _held_out_auc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, items: list[Item]) -> str:
    """The AUC and its 95 % interval from a bootstrap that draws whole originals (a generated
    picture with its JPEG re-save, a CoMoFoD original with its versions)."""
    part = positive | negative
    units = [source_group(i.group, str(i.path), "", False) for i, kept in zip(items, part, strict=True) if kept]
    return format_auc(scores[part], positive[part], negative[part], units)


def _folds(x: np.ndarray, items: list[Item]) -> list[dict[str, str]]:
    groups = np.array([i.group for i in items])
    small = np.array([_too_small(i) for i in items])
    ai = np.array([i.ai for i in items])
    jpeg = np.array([i.jpeg_quality is not None for i in items])
    rows: list[dict[str, str]] = []
    camera_scores, camera_lines = [], []
    for generator, held_genuine in FOLDS.items():
        test_pos = groups == generator
        test_neg = np.isin(groups, held_genuine)
        train = ~test_pos & ~test_neg
        if not test_pos.any() or not (train & ai).any():
            continue
        head = probe.fit(x[train], ai[train])
        scores = probe.logits(head, x)
        line = float(np.quantile(scores[train & ~ai], LINE_QUANTILE))
        where = f"held out: {GENERATOR_NAMES[generator]} vs {', '.join(held_genuine)}"
        stored = test_pos & ~jpeg
        rows.append({"set": where, "measure": "ROC AUC (as stored) [95 % interval]", "value": _held_out_auc(scores, stored, test_neg, items)})
        if (test_pos & jpeg).any():
            rows.append(
                {
                    "set": where,
                    "measure": "ROC AUC (generated re-saved as JPEG) [95 % interval]",
                    "value": _held_out_auc(scores, test_pos & jpeg, test_neg, items),
                }
            )
        rows.append({"set": where, "measure": "detected at the line (as stored)", "value": f"{float((scores[stored] > line).mean()):.3f}"})
        if small[test_pos].any():
            rows.append(
                {
                    "set": where,
                    "measure": f"held-out generated images under {clip_encoder.MIN_SIDE} px a side: the method reports them not applicable",
                    "value": f"{float(small[test_pos].mean()):.3f}",
                }
            )
        camera = test_neg & np.isin(groups, CAMERA_SETS)
        if camera.any():
            camera_scores.append(scores[camera])
            camera_lines.append(np.full(int(camera.sum()), line))
            rows.append(
                {
                    "set": where,
                    "measure": f"false alarms at the line, camera/phone originals ({int(camera.sum())})",
                    "value": f"{float((scores[camera] > line).mean()):.3f}",
                }
            )
        if generator == "sd14":
            real = groups == "cifake_real"
            rows.append(
                {
                    "set": where,
                    "measure": "ROC AUC vs CIFAKE real only (both 32x32 JPEG)",
                    "value": _fmt(roc_auc(list(scores[test_pos]), list(scores[real]))),
                }
            )
    if camera_scores:
        hits = int((np.concatenate(camera_scores) > np.concatenate(camera_lines)).sum())
        n = sum(len(s) for s in camera_scores)
        rows.append(
            {
                "set": "all camera/phone originals, each in the fold holding it out",
                "measure": f"false alarms at the fold's line ({n}) [95 % interval]",
                "value": format_rate(hits, n),
            }
        )
    return rows


def _size_format_check(pixels: np.ndarray, png: np.ndarray, items: list[Item]) -> list[dict[str, str]]:
    """How well size or format alone separate generated from genuine: what the probe must not be."""
    ai = np.array([i.ai for i in items])
    stored = np.array([i.jpeg_quality is None for i in items])
    rows = []
    for name, value in (("pixel count", pixels), ("is PNG", png)):
        auc = roc_auc(list(value[ai & stored]), list(value[~ai]))
        auc_all = roc_auc(list(value[ai]), list(value[~ai]))
        rows.append(
            {"set": "size/format alone, all generated (as stored) vs all genuine", "measure": f"ROC AUC of {name}", "value": _fmt(auc)}
        )
        rows.append({"set": "size/format alone, with the JPEG re-saves added", "measure": f"ROC AUC of {name}", "value": _fmt(auc_all)})
    return rows


def train(settings: RunSettings) -> Path:
    started = time.perf_counter()
    seed_everything(settings.seed)
    torch.set_num_threads(1)
    if settings.exclude:
        raise SystemExit("ai_pixels has no --exclude: its figures are leave-one-generator-out folds")
    items = _items(settings)
    x, pixels, png, items = embeddings(items, settings)
    ai = np.array([i.ai for i in items])
    counts = {g: sum(1 for i in items if i.group == g) for g in dict.fromkeys(i.group for i in items)}
    print(f"{len(items)} images: " + ", ".join(f"{g} {n}" for g, n in counts.items()), flush=True)
    figures = _folds(x, items) + _size_format_check(pixels, png, items)
    head = probe.fit(x, ai)
    scores = probe.logits(head, x)
    line = float(np.quantile(scores[~ai], LINE_QUANTILE))
    figures.append(
        {
            "set": "shipped head, its own training data",
            "measure": "ROC AUC (in-sample)",
            "value": _fmt(roc_auc(list(scores[ai]), list(scores[~ai]))),
        }
    )
    for row in figures:
        print(f"  {row['set']:78s} {row['measure']:58s} {row['value']}", flush=True)
    print(f"line (logit): {line:.4f}")
    card = {
        "version": VERSION,
        "summary": "Logit that an image's pixels were made by a text-to-image generator: a linear probe on frozen CLIP ViT-B/16 embeddings "
        "(Ojha, Li & Lee, CVPR 2023), read by the `ai_generated` method.",
        "input_description": [
            "`embedding`: float32 (batch, 512), the unit-normalised CLIP image embedding, the first part of "
            "forensics.learn.clip_encoder.embed's features (shorter side to 224 px, centre 224x224 crop, CLIP normalisation)",
            f"encoder: {clip_encoder.ENCODER_ID}, ONNX SHA-256 {clip_encoder.ENCODER_SHA256}",
        ],
        "architecture": f"nn.Linear(512, 1), class-balanced logistic regression with L2 penalty {probe.L2} (full-batch L-BFGS); logits out",
        "data": [
            "generated: imagen_gallery (Disco Diffusion, DALL-E mini, GLID-3; each PNG also re-saved as JPEG q70-95) and "
            f"cifake_subset ai (Stable Diffusion 1.4, {CIFAKE_PER_CLASS} drawn)",
            f"genuine: cifake_subset authentic ({CIFAKE_PER_CLASS} drawn), {', '.join(CAMERA_SETS)} (camera/phone originals), "
            f"authentic rows of {', '.join(OTHER_GENUINE)}",
            "figures: leave-one-generator-out folds, each also holding out whole genuine datasets; the line is the "
            f"{LINE_QUANTILE:.0%} quantile of the training genuine photos' logits",
        ],
        "limits": [
            "four generators of 2021-2022 (three artistic galleries, one 32x32 set): modern generators (SDXL, Midjourney v6, DALL-E 3, "
            "FLUX) are not in the data, so the held-out figures say little about them",
            "a few hundred genuine photos from a few dozen cameras: false-alarm rates are measured on 16 to 92 photos per set",
            "one centre crop at 224 px: a generated region outside it, or an image mostly of generated text or graphics, is not seen",
            "INT8 CLIP embeddings; the head is only valid with the pinned encoder file",
        ],
        "figures": figures,
        "line": round(line, 6),
        "line_quantile": LINE_QUANTILE,
        "encoder": {"id": clip_encoder.ENCODER_ID, "revision": clip_encoder.ENCODER_REVISION, "sha256": clip_encoder.ENCODER_SHA256},
    }
    return probe.export_head(head, NAME, settings, card, started)
