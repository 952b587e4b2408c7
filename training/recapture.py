"""Train the ``recapture`` head ("photo of a photo"): a linear probe on frozen CLIP embeddings.

A photo of a screen or a print shows what the second capture adds to the whole picture: a
bezel, a screen's glow and colour cast, glare and reflections on glass or gloss paper, paper
edges, the flat perspective of a rectangle filling the frame, coarse moire bands. A frozen CLIP
ViT-B/16 embedding (:mod:`forensics.learn.clip_encoder`, the one the AI-generated probe reads)
carries these, and a logistic head on it (:mod:`training.probe`) generalises across
contributors where a patch network on pixel-scale traces did not: held out, that network
ranked one contributor's recaptures at 0.451, because that contributor's files are 900-px
messaging-app re-saves at JPEG quality 50, which erase moire, halftone and the screen grid.

Data: ``recapture_phone`` (photos of real scenes vs photos of laptop, monitor, TV and phone
screens and prints, two contributors) and ``nuaa_print_attack`` (live webcam faces vs
photographed face prints; Tan et al., ECCV 2010). Genuine camera photos from other sets are
negatives too.

Evaluation is leave-one-group-out, as the data README asks: one fold per recapture_phone
contributor (their phones, orientation habits and messaging-app re-saves differ) and three
folds of NUAA subjects (consecutive frames of one subject are near-duplicates). Each
false-alarm set (``dresden_natural``, ``exif_samples_ianare`` authentic JPEGs,
``mapo80_exif_spoof`` authentic) is held out together with one fold's group, so its false
alarms come from a head that never saw it. Each fold's decision line is the 99th percentile of
the logit on that fold's *training* authentic images. A check prints how well image size, JPEG
quality (luma quant-table mean) and orientation alone separate the classes of recapture_phone,
next to the head's held-out AUC, and each fold's head is also scored on its held-out
recapture_phone images turned by 90 degrees, which reverses the orientation cue. The shipped head is then fitted on every group, its line
chosen the same way.
"""

import io
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from forensics.dataset import read_index
from forensics.evaluation import roc_auc
from forensics.learn import clip_encoder
from training import probe
from training.common import RunSettings, seed_everything

NAME = "recapture"
#: Bumped when the data, the encoder or the head changes (card version).
VERSION = "2.0"
TRAIN_SETS = ("recapture_phone", "nuaa_print_attack")
#: Camera originals measured for false alarms; each is held out together with one fold's group
#: (and trained on, as a negative, in the other folds and in the shipped head).
CAMERA_SETS = {
    "dresden_natural": "recapture_phone Akshansingh",
    "exif_samples_ianare": "recapture_phone LegenD742",
    "mapo80_exif_spoof": "nuaa subject 0006",
}
#: Further genuine photos (authentic rows of the masked benchmarks), used only as training negatives.
EXTRA_NEGATIVES = ("casia2_samples", "comofod_subset", "noso_copymove", "cvip_copymove")
#: NUAA subjects (first number of the file name) grouped into folds of similar size.
NUAA_FOLDS = {
    "0003": "nuaa subjects 0003+0015",
    "0015": "nuaa subjects 0003+0015",
    "0006": "nuaa subject 0006",
    "0009": "nuaa subjects 0009+0012",
    "0012": "nuaa subjects 0009+0012",
}
#: Quantile of the training authentic logits that sets the decision line.
LINE_QUANTILE = 0.99
#: Per preset: images per dataset (None: all) and whether the folds run.
PRESETS: dict[str, tuple[int | None, bool]] = {"default": (None, True), "tiny": (4, False)}


@dataclass(frozen=True, slots=True)
class Item:
    """One image: its dataset, path, fold group, label, and the size/quality check values."""

    dataset: str
    path: Path
    group: str
    positive: bool
    landscape: bool
    quant_mean: float

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.path.name}"


def _group(dataset: str, file: str, source: str) -> str:
    if dataset == "recapture_phone":
        return "recapture_phone " + source.split(":")[0].split("/")[0]
    if dataset == "nuaa_print_attack":
        return NUAA_FOLDS.get(Path(file).name.split("_")[0], "nuaa other subjects")
    return CAMERA_SETS.get(dataset, "always trained")


def _header(path: Path) -> tuple[bool, float]:
    """Orientation and luma quant-table mean from the file's header (no decoding)."""
    try:
        with Image.open(path) as image:
            tables = getattr(image, "quantization", None) or {}
            return image.width > image.height, float(np.mean(tables[0])) if 0 in tables else 0.0
    except OSError:
        return False, 0.0


def _items(settings: RunSettings, limit: int | None) -> list[Item]:
    items = []
    for dataset in TRAIN_SETS + tuple(CAMERA_SETS) + EXTRA_NEGATIVES:
        folder = settings.data / dataset
        if not (folder / "index.csv").exists():
            continue
        samples = read_index(folder)
        if dataset in TRAIN_SETS:
            samples = [s for s in samples if s.label in {"authentic", "recaptured"}]
        else:
            samples = [s for s in samples if s.label == "authentic" and (s.suffix in {".jpg", ".jpeg"} or dataset in EXTRA_NEGATIVES)]
        if limit:
            samples = samples[: limit // 2] + samples[-(limit // 2) :]
        for s in samples:
            landscape, quant = _header(s.path)
            items.append(Item(dataset, s.path, _group(dataset, str(s.path), s.source), s.label == "recaptured", landscape, quant))
    return items


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _false_alarms(stats: np.ndarray, line: float) -> str:
    return f"{(stats > line).mean():.1%} ({int((stats > line).sum())}/{len(stats)})" if len(stats) else "-"


def _turned(path: Path) -> bytes:
    """The image turned by 90 degrees, as a PNG: the orientation check's input."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def evaluate_folds(x: np.ndarray, items: list[Item], turned: np.ndarray) -> tuple[list[dict[str, str]], np.ndarray]:
    """Leave-one-group-out figures, and the held-out logit of every training-set image (NaN elsewhere).

    ``turned`` holds the embeddings of the images turned by 90 degrees (NaN rows where not made):
    the classes of recapture_phone differ in orientation, so the held-out AUC is also measured
    with every image turned, which reverses that cue."""
    groups = np.array([i.group for i in items])
    datasets = np.array([i.dataset for i in items])
    positive = np.array([i.positive for i in items])
    held_out = np.full(len(items), np.nan)
    figures: list[dict[str, str]] = []
    for group in sorted({i.group for i in items if i.dataset in TRAIN_SETS}):
        test = groups == group
        head = probe.fit(x[~test], positive[~test])
        scores = probe.logits(head, x)
        line = float(np.quantile(scores[~test & ~positive], LINE_QUANTILE))
        held_out[test] = scores[test]
        name = f"held out: {group}"
        rows = [{"set": name, "measure": f"line (q{LINE_QUANTILE:.2f} of training authentic)", "value": _fmt(line)}]
        for dataset in sorted(set(datasets[test])):
            part = test & (datasets == dataset)
            pos, neg = scores[part & positive], scores[part & ~positive]
            if len(pos):
                rows.append({"set": name, "measure": f"{dataset}: image ROC AUC", "value": _fmt(roc_auc(list(pos), list(neg)))})
                rows.append({"set": name, "measure": f"{dataset}: recaptured detected at the line", "value": f"{np.mean(pos > line):.1%}"})
                made = part & np.isfinite(turned).all(axis=1)
                if made.any():
                    t = probe.logits(head, turned[made])
                    measure = f"{dataset}: image ROC AUC, every image turned 90 degrees"
                    rows.append(
                        {"set": name, "measure": measure, "value": _fmt(roc_auc(list(t[positive[made]]), list(t[~positive[made]])))}
                    )
            kind = "authentic" if dataset in TRAIN_SETS else "camera originals"
            rows.append({"set": name, "measure": f"{dataset}: false alarms, held-out {kind}", "value": _false_alarms(neg, line)})
        for row in rows:
            print(f"  {row['set']:42s} {row['measure']:60s} {row['value']}", flush=True)
        figures += rows
    return figures, held_out


def confound_check(items: list[Item], pixels: np.ndarray, held_out: np.ndarray) -> list[dict[str, str]]:
    """How well size, JPEG quality and orientation alone separate recapture_phone's classes, beside the head."""
    rows = []
    phone = [k for k, i in enumerate(items) if i.dataset == "recapture_phone"]
    for group in sorted({items[k].group for k in phone}) + ["recapture_phone (both contributors)"]:
        part = [k for k in phone if items[k].group == group or group.endswith("(both contributors)")]
        measures = {
            "pixel count alone": pixels,
            "luma quant-table mean alone": np.array([i.quant_mean for i in items]),
            "landscape orientation alone": np.array([float(i.landscape) for i in items]),
            "head's logit (held out)": held_out,
        }
        for measure, values in measures.items():
            pos = [float(values[k]) for k in part if items[k].positive and not np.isnan(values[k])]
            neg = [float(values[k]) for k in part if not items[k].positive and not np.isnan(values[k])]
            rows.append({"set": f"check: {group}", "measure": f"AUC of {measure}", "value": _fmt(roc_auc(pos, neg))})
    for row in rows:
        print(f"  {row['set']:42s} {row['measure']:52s} {row['value']}", flush=True)
    return rows


def train(settings: RunSettings) -> Path:
    started = time.perf_counter()
    seed_everything(settings.seed)
    torch.set_num_threads(1)
    limit, folds = PRESETS[settings.size]
    items = [i for i in _items(settings, limit) if i.dataset not in settings.exclude]
    sources = [probe.Source(i.key, i.path.name, i.path.read_bytes) for i in items]
    cache = settings.work / f"{NAME}_embeddings_{clip_encoder.ENCODER_SHA256[:12]}.npz"
    x, pixels, _, kept = probe.embeddings(sources, cache)
    items = [items[k] for k in kept]
    positive = np.array([i.positive for i in items])
    print(
        f"{len(items)} images: {int(positive.sum())} recaptured, {sum(i.dataset not in TRAIN_SETS for i in items)} further genuine photos"
    )
    figures: list[dict[str, str]] = []
    if folds:
        phone = [k for k, i in enumerate(items) if i.dataset == "recapture_phone"]
        turned_sources = [
            probe.Source(f"{items[k].key}#turned", f"{items[k].path.stem}.png", partial(_turned, items[k].path)) for k in phone
        ]
        x_turned, _, _, made = probe.embeddings(turned_sources, cache)
        turned = np.full_like(x, np.nan)
        turned[[phone[k] for k in made]] = x_turned
        fold_figures, held_out = evaluate_folds(x, items, turned)
        figures += fold_figures + confound_check(items, pixels, held_out)
    head = probe.fit(x, positive)
    line = float(np.quantile(probe.logits(head, x)[~positive], LINE_QUANTILE))
    figures.append({"set": "shipped head", "measure": f"line (q{LINE_QUANTILE:.2f} of training authentic)", "value": _fmt(line)})
    print(f"  {'shipped head':42s} {figures[-1]['measure']:60s} {figures[-1]['value']}", flush=True)
    card = {
        "version": VERSION,
        "summary": "Logit that a photo is a photograph of a screen or a print: a linear probe on frozen CLIP ViT-B/16 embeddings, "
        "read by the `recapture` method.",
        "input_description": [
            "`embedding`: float32 (batch, 512), the unit-normalised CLIP image embedding of forensics.learn.clip_encoder.embed "
            "(shorter side to 224 px, centre 224x224 crop, CLIP normalisation)",
            f"encoder: {clip_encoder.ENCODER_ID}, ONNX SHA-256 {clip_encoder.ENCODER_SHA256}",
        ],
        "architecture": f"nn.Linear(512, 1), class-balanced logistic regression with L2 penalty {probe.L2} (full-batch L-BFGS); logits out",
        "data": [
            "recapture_phone (two contributors' phone photos of scenes vs of screens and prints) and nuaa_print_attack (webcam faces vs printed faces)",
            f"genuine negatives: authentic rows of {', '.join(tuple(CAMERA_SETS) + EXTRA_NEGATIVES)}",
            "evaluation: leave one group out (each recapture_phone contributor; NUAA subjects in three groups); "
            + "; ".join(f"{k} held out with {v}" for k, v in CAMERA_SETS.items()),
        ],
        "limits": [
            "two phone contributors and one webcam print-attack set: other phones, screens, printers and re-save chains are untested",
            "it reads the centre square of the picture at 224 px, not pixel-scale traces: a genuine photo framed like a screen or a print "
            "(a monitor, a poster or a document filling the frame) can read as one, and a recapture that shows nothing of the "
            "screen or paper around the picture can pass",
            "the held-out contributor's own genuine photos sit higher than the training ones, so its false alarms at the line "
            "are above the 1 % the line is set for (figures below)",
            "INT8 CLIP embeddings; the head is only valid with the pinned encoder file",
        ],
        "figures": figures,
        "line": round(line, 4),
        "line_rule": f"quantile {LINE_QUANTILE} of the logit on the training authentic images",
        "encoder": {"id": clip_encoder.ENCODER_ID, "revision": clip_encoder.ENCODER_REVISION, "sha256": clip_encoder.ENCODER_SHA256},
    }
    return probe.export_head(head, NAME, settings, card, started)
