"""Train the ``recapture`` detector ("photo of a photo"): a small CNN on full-resolution patches.

Data: ``recapture_phone`` (photos of real scenes vs photos of laptop, monitor, TV and phone
screens and prints, two contributors) and ``nuaa_print_attack`` (live webcam faces vs
photographed face prints; Tan et al., ECCV 2010). Every patch of an image carries the
image's label; the image statistic is the mean patch logit (:func:`image_statistic`).

Evaluation is leave-one-group-out, as the data README asks: one fold per recapture_phone
contributor (their phones, orientation habits and messaging-app re-saves differ) and three
folds of NUAA subjects (consecutive frames of one subject are near-duplicates). Genuine camera
photos from other sets are negatives too (without them the model took any unfamiliar camera
for a recapture); each false-alarm set (``dresden_natural``, ``exif_samples_ianare``
authentic JPEGs, ``mapo80_exif_spoof`` authentic) is held out together with one fold's group,
so its false alarms come from a model that never saw it. Each fold's decision line is the
99th percentile of the statistic on that fold's *training* authentic images. A check prints
how well image size, JPEG quality (luma quant-table mean) and orientation alone separate the
classes of recapture_phone, next to the model's held-out AUC, and how the model's statistic
correlates with size and quality inside each class. The shipped model is then trained on
every group, its line chosen the same way.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forensics.dataset import read_index
from forensics.evaluation import roc_auc
from forensics.image import load_image
from forensics.learn.recapture_input import CHANNELS, PATCH, PATCHES, prepare
from training.common import RunSettings, device, export, parallel_map, seed_everything, timed

NAME = "recapture"
#: Bumped when the input or the network changes (cache key and card version).
VERSION = "1.0"
TRAIN_SETS = ("recapture_phone", "nuaa_print_attack")
#: Camera originals measured for false alarms; each is held out together with one fold's group
#: (and trained on, as a negative, in the other folds and in the shipped model).
CAMERA_SETS = {
    "dresden_natural": "recapture_phone Akshansingh",
    "exif_samples_ianare": "recapture_phone LegenD742",
    "mapo80_exif_spoof": "nuaa subject 0006",
}
#: Further genuine photos (authentic rows of the masked benchmarks), used only as training negatives.
EXTRA_NEGATIVES = ("casia2_samples", "comofod_subset", "noso_copymove", "cvip_copymove")
#: Patches per image drawn afresh each epoch (of the PATCHES prepared): halves the cost, adds variety.
EPOCH_PATCHES = 8
#: NUAA subjects (first number of the file name) grouped into folds of similar size.
NUAA_FOLDS = {
    "0003": "nuaa subjects 0003+0015",
    "0015": "nuaa subjects 0003+0015",
    "0006": "nuaa subject 0006",
    "0009": "nuaa subjects 0009+0012",
    "0012": "nuaa subjects 0009+0012",
}
#: Quantile of the training authentic statistics that sets the decision line.
LINE_QUANTILE = 0.99
#: Per preset: epochs, network width, images per training set (None: all), run the folds.
PRESETS = {"default": (8, 8, None, True), "tiny": (1, 4, 6, False)}
BATCH = 64


@dataclass(frozen=True, slots=True)
class Item:
    """One prepared image: its patches (float16), label, fold group and the size/quality check values."""

    dataset: str
    file: str
    group: str
    positive: bool
    patches: np.ndarray
    pixels: int
    landscape: bool
    quant_mean: float


class RecaptureNet(nn.Module):
    """Five 3x3 convolutions (three of stride 2), global average pooling, one logit per patch.

    The first layer runs at full resolution so the pixel-scale periodicities (screen grid,
    moire, halftone) reach the network before any subsampling.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(len(CHANNELS), w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 2), *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 1)
        )
        self.head = nn.Linear(4 * w, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(patches).mean(dim=(2, 3)))[:, 0]


def image_statistic(logits: np.ndarray) -> float:
    """Mean patch logit: every patch votes, so one odd patch (a reflection, a logo) moves it little."""
    return float(np.mean(logits)) if len(logits) else 0.0


def _group(dataset: str, file: str, source: str) -> str:
    if dataset == "recapture_phone":
        return "recapture_phone " + source.split(":")[0].split("/")[0]
    if dataset == "nuaa_print_attack":
        return NUAA_FOLDS.get(Path(file).name.split("_")[0], "nuaa other subjects")
    return CAMERA_SETS.get(dataset, "always trained")


def _prepare_one(task: tuple[str, str, str, bool, str]) -> Item | None:
    dataset, path, group, positive, _ = task
    try:
        image = load_image(Path(path).read_bytes(), filename=Path(path).name)
    except Exception as exc:  # a reference file the engine refuses is left out and reported
        print(f"  skipped {dataset}/{Path(path).name}: {exc}", flush=True)
        return None
    x = prepare(image.rgb)
    if len(x.patches) == 0:
        return None
    quant = float(image.jpeg.table_for(0).mean()) if image.jpeg is not None else 0.0
    return Item(
        dataset,
        Path(path).name,
        group,
        positive,
        x.patches.astype(np.float16),
        image.width * image.height,
        image.width > image.height,
        quant,
    )


def load_items(settings: RunSettings, limit: int | None) -> list[Item]:
    """Every usable image of the training and camera sets, prepared (cached in the work folder)."""
    cache = settings.work / f"{NAME}_{settings.size}_v{VERSION}_{PATCH}x{PATCHES}.npz"
    tasks = []
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
        tasks += [(dataset, str(s.path), _group(dataset, str(s.path), s.source), s.label == "recaptured", s.source) for s in samples]
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        meta, counts, patches = stored["meta"], stored["counts"], stored["patches"]  # each key read once: NpzFile re-reads per access
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            Item(str(m[0]), str(m[1]), str(m[2]), m[3] == "1", patches[bounds[i] : bounds[i + 1]], int(m[4]), m[5] == "1", float(m[6]))
            for i, m in enumerate(meta)
        ]
    done = timed(f"prepared {len(tasks)} images")
    items = [i for i in parallel_map(_prepare_one, tasks, chunksize=4) if i is not None]
    done()
    settings.work.mkdir(parents=True, exist_ok=True)
    meta = np.array(
        [
            [i.dataset, i.file, i.group, "1" if i.positive else "0", str(i.pixels), "1" if i.landscape else "0", str(i.quant_mean)]
            for i in items
        ]
    )
    np.savez(cache, meta=meta, counts=np.array([len(i.patches) for i in items]), patches=np.concatenate([i.patches for i in items]))
    return items


def _domain(item: Item) -> str:
    """Weighting domain: each training set, and all other genuine photos together, weigh the same."""
    return item.dataset if item.dataset in TRAIN_SETS else "other originals"


def fit(items: list[Item], epochs: int, width: int, seed: int) -> RecaptureNet:
    """Train a fresh network on the patches of ``items``; each weighting domain weighs the same."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    domains = [_domain(i) for i in items]
    per_domain = {d: domains.count(d) for d in set(domains)}
    image_weight = np.array([len(items) / (len(per_domain) * per_domain[d]) for d in domains], np.float32)
    labels = np.array([float(i.positive) for i in items], np.float32)
    model = RecaptureNet(width).to(device())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    per_epoch = len(items) * EPOCH_PATCHES
    steps = max(1, epochs * ((per_epoch + BATCH - 1) // BATCH))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    for epoch in range(epochs):
        model.train()
        # this epoch's patches: EPOCH_PATCHES drawn from each image's prepared ones
        picks = [
            (k, j)
            for k, item in enumerate(items)
            for j in rng.choice(len(item.patches), min(EPOCH_PATCHES, len(item.patches)), replace=False)
        ]
        x = np.stack([items[k].patches[j] for k, j in picks])
        owner = np.array([k for k, _ in picks])
        total, started = 0.0, time.perf_counter()
        for (xb, wb), yb in _batches(x, labels[owner], torch.from_numpy(image_weight[owner]), rng):
            optimiser.zero_grad()
            loss = (loss_fn(model(xb.to(device())), yb.to(device())) * wb.to(device())).mean()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(yb)
        print(f"    epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return model.eval()


def _batches(
    x: np.ndarray, y: np.ndarray, weight: torch.Tensor, rng: np.random.Generator
) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Shuffled weighted batches, each turned by one of the eight flips/rotations (orientation must not matter)."""
    order = rng.permutation(len(x))
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        xb = np.rot90(x[idx].astype(np.float32), k=int(rng.integers(4)), axes=(2, 3))
        if rng.random() < 0.5:
            xb = xb[..., ::-1]
        yield (torch.from_numpy(np.ascontiguousarray(xb)), weight[idx]), torch.from_numpy(y[idx])


def statistics(model: nn.Module, items: list[Item]) -> np.ndarray:
    """The image statistic of every item under ``model``."""
    out = []
    with torch.no_grad():
        for item in items:
            logits = model(torch.from_numpy(item.patches.astype(np.float32)).to(device())).cpu().numpy()
            out.append(image_statistic(logits))
    return np.array(out)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _false_alarms(stats: np.ndarray, line: float) -> str:
    return f"{(stats > line).mean():.1%} ({int((stats > line).sum())}/{len(stats)})" if len(stats) else "-"


def evaluate_folds(items: list[Item], epochs: int, width: int, seed: int) -> tuple[list[dict[str, str]], dict[str, float]]:
    """Leave-one-group-out figures, and the held-out statistic of every training-set image."""
    figures: list[dict[str, str]] = []
    held_out: dict[str, float] = {}
    for group in sorted({i.group for i in items if i.dataset in TRAIN_SETS}):
        test = [i for i in items if i.group == group]
        train = [i for i in items if i.group != group]
        done = timed(f"  fold '{group}' ({len(train)} training images, {len(test)} held out)")
        model = fit(train, epochs, width, seed)
        done()
        line = float(np.quantile(statistics(model, [i for i in train if not i.positive]), LINE_QUANTILE))
        test_stats = statistics(model, test)
        held_out.update({f"{i.dataset}/{i.file}": float(s) for i, s in zip(test, test_stats, strict=True)})
        name = f"held out: {group}"
        rows = [{"set": name, "measure": f"line (q{LINE_QUANTILE:.2f} of training authentic)", "value": _fmt(line)}]
        for dataset in sorted({i.dataset for i in test}):
            stats = np.array([s for i, s in zip(test, test_stats, strict=True) if i.dataset == dataset])
            positive = np.array([i.positive for i in test if i.dataset == dataset])
            if positive.any():
                rows.append(
                    {
                        "set": name,
                        "measure": f"{dataset}: image ROC AUC",
                        "value": _fmt(roc_auc(list(stats[positive]), list(stats[~positive]))),
                    }
                )
                rows.append(
                    {
                        "set": name,
                        "measure": f"{dataset}: recaptured detected at the line",
                        "value": f"{np.mean(stats[positive] > line):.1%}",
                    }
                )
            kind = "authentic" if dataset in TRAIN_SETS else "camera originals"
            rows.append(
                {"set": name, "measure": f"{dataset}: false alarms, held-out {kind}", "value": _false_alarms(stats[~positive], line)}
            )
        for row in rows:
            print(f"  {row['set']:42s} {row['measure']:60s} {row['value']}", flush=True)
        figures += rows
    return figures, held_out


def confound_check(items: list[Item], held_out: dict[str, float]) -> list[dict[str, str]]:
    """How well size, JPEG quality and orientation alone separate recapture_phone's classes, beside the model."""
    rows = []
    phone = [i for i in items if i.dataset == "recapture_phone"]
    for group in sorted({i.group for i in phone}) + ["recapture_phone (both contributors)"]:
        part = [i for i in phone if i.group == group or group.endswith("(both contributors)")]
        measures = {
            "pixel count alone": [float(i.pixels) for i in part],
            "luma quant-table mean alone": [i.quant_mean for i in part],
            "landscape orientation alone": [float(i.landscape) for i in part],
            "model statistic (held out)": [held_out.get(f"{i.dataset}/{i.file}", np.nan) for i in part],
        }
        for measure, values in measures.items():
            pos = [v for i, v in zip(part, values, strict=True) if i.positive and not np.isnan(v)]
            neg = [v for i, v in zip(part, values, strict=True) if not i.positive and not np.isnan(v)]
            rows.append({"set": f"check: {group}", "measure": f"AUC of {measure}", "value": _fmt(roc_auc(pos, neg))})
        stat = np.array(measures["model statistic (held out)"])
        for cls in (False, True):
            mask = np.array([i.positive == cls for i in part]) & ~np.isnan(stat)
            for measure in ("pixel count alone", "luma quant-table mean alone"):
                values = np.array(measures[measure])[mask]
                rho = _spearman(values, stat[mask])
                label = "recaptured" if cls else "authentic"
                rows.append(
                    {
                        "set": f"check: {group}",
                        "measure": f"Spearman(statistic, {measure.split(' alone')[0]}) in {label}",
                        "value": _fmt(rho, 2),
                    }
                )
    for row in rows:
        print(f"  {row['set']:42s} {row['measure']:52s} {row['value']}", flush=True)
    return rows


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def train(settings: RunSettings) -> Path:
    started = time.perf_counter()
    seed_everything(settings.seed)
    torch.set_num_threads(1)  # measured: on a shared 2-core machine a second thread only contends (7 s vs 125 s per epoch)
    epochs, width, limit, folds = PRESETS[settings.size]
    items = [i for i in load_items(settings, limit) if i.dataset not in getattr(settings, "exclude", ())]
    train_items = [i for i in items if i.dataset in TRAIN_SETS]
    print(
        f"{len(items)} images: {sum(i.positive for i in items)} recaptured, {len(items) - len(train_items)} further genuine photos",
        flush=True,
    )
    figures: list[dict[str, str]] = []
    if folds:
        fold_figures, held_out = evaluate_folds(items, epochs, width, settings.seed)
        figures += fold_figures + confound_check(items, held_out)
    done = timed(f"shipped model ({len(items)} images)")
    model = fit(items, epochs, width, settings.seed)
    done()
    line = float(np.quantile(statistics(model, [i for i in items if not i.positive]), LINE_QUANTILE))
    figures.append({"set": "shipped model", "measure": f"line (q{LINE_QUANTILE:.2f} of training authentic)", "value": _fmt(line)})
    print(f"  {'shipped model':42s} {figures[-1]['measure']:60s} {figures[-1]['value']}", flush=True)
    card = {
        "version": VERSION,
        "summary": "Per-patch logit that a photo is a photograph of a screen or print (the `recapture` method; image statistic = mean patch logit).",
        "input_description": [
            f"`patches`: float32 (n, {len(CHANNELS)}, {PATCH}, {PATCH}), the {PATCHES} most textured patches of a grid over the full-resolution image "
            "(forensics.learn.recapture_input.prepare): " + ", ".join(CHANNELS)
        ],
        "architecture": f"5 3x3 convolutions (widths {width}-{2 * width}-{2 * width}-{4 * width}-{4 * width}, three of stride 2) with batch norm, "
        "global average pooling, a linear head; one logit per patch",
        "data": [
            "recapture_phone (two contributors' phone photos of scenes vs of screens and prints) and nuaa_print_attack (webcam faces vs printed faces)",
            f"every patch labelled with its image's label; {EPOCH_PATCHES} of the {PATCHES} patches drawn per image and epoch; random flips and 90-degree turns",
            f"genuine negatives: authentic rows of {', '.join(tuple(CAMERA_SETS) + EXTRA_NEGATIVES)}; the three sets, the other originals, weigh the same",
            "evaluation: leave one group out (each recapture_phone contributor; NUAA subjects in three groups); "
            + "; ".join(f"{k} held out with {v}" for k, v in CAMERA_SETS.items()),
        ],
        "limits": [
            "two phone contributors and one webcam print-attack set: other phones, screens, printers and re-save chains are untested",
            "a recapture shot from far or heavily downscaled afterwards loses the pixel-scale traces the model reads",
            "the statistic follows JPEG quality and size within recapture_phone only as far as the check figures show",
        ],
        "figures": figures,
        "line": round(line, 4),
        "line_rule": f"quantile {LINE_QUANTILE} of the statistic on the training authentic images",
        "patch": PATCH,
        "patches": PATCHES,
        "channels": list(CHANNELS),
    }
    return export(
        model,
        NAME,
        settings,
        inputs={"patches": (3, len(CHANNELS), PATCH, PATCH)},
        outputs=["logits"],
        dynamic_axes={"patches": {0: "n"}, "logits": {0: "n"}},
        card=card,
        started=started,
    )
