"""Train the deep scan localizer: a compact fully convolutional network on per-block traces.

Data: local manipulations (splices between photos of different cameras and compression
histories, resampled pastes, blur retouching, clone stamp, OpenCV inpainting, colour edits:
:mod:`forensics.synth.edits`) made on crops of genuine photos, each saved by a drawn encoder
(IJG qualities 60-98, Photoshop tables, PNG), plus untouched crops saved the same way, so that
re-saving alone separates nothing, and windows of the originals as stored (their camera's own
single compression, never re-saved, which a network trained on re-saved crops alone takes
for a trace on whole originals). The genuine photos come only from :data:`TRAIN_SOURCES`:
the benchmark sets with masks (CASIA, CoMoFoD, NoSo, CVIP) never enter training, so every
figure on them is held out. Inside the training sources, validation holds out whole originals
(15 %). ``--exclude DATASET`` trains a fold model without any crop that holds a photo of that
dataset (host or donor): ``scripts/calibrate.py`` scores a held-out dataset with such a model.

The network sees :func:`forensics.learn.block_features.block_features` of the decoded file,
the very function the engine calls, and predicts per block the tampered share of its pixels.
"""

import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forensics.dataset import read_index, source_group
from forensics.evaluation import format_auc, pixel_f1, roc_auc
from forensics.image import load_image
from forensics.learn.block_features import ADQ_NEUTRAL, BLOCK, CHANNELS, block_features, pool_factor, pooled
from forensics.methods.deep_scan import VERSION, image_statistic
from forensics.synth.edits import LOCAL_EDITS, NEEDS_DONOR
from forensics.synth.encoders import draw_encoder, encode
from forensics.synth.sources import Original, aligned_crop, list_originals, load_rgb, seed_sequence
from training.common import RunSettings, cached_npz, device, export, in_validation, parallel_map, seed_everything, timed

NAME = "deep_scan"
#: Genuine photos the training data is made from (camera and phone originals only).
TRAIN_SOURCES = ("dresden_natural", "exif_samples_ianare", "mapo80_exif_spoof", "recapture_phone")
#: Benchmark sets with masks, never used for training: the held-out figures.
HELD_OUT_SETS = ("casia2_samples", "comofod_subset", "noso_copymove", "cvip_copymove")
CROP = 384
VALIDATION_SHARE = 0.15
#: Per preset: crops per original, originals cap, epochs, network width.
PRESETS = {"default": (48, None, 14, 16), "tiny": (2, 6, 1, 8)}
#: Pooling factors drawn per batch, as the method pools large photos (see block_features.pooled).
POOL_FACTORS = (1, 1, 2, 3)
#: Share of crops left unedited (saved by the drawn encoder all the same).
UNEDITED_SHARE = 0.35
#: Share of crops whose compression-history channel is left neutral, as the fast sensitivity does.
NO_HISTORY_SHARE = 0.2
#: Share of samples that are windows of an original's block map as stored: not re-saved, so
#: that a photo's single, camera-made compression is as familiar as a re-saved one.
STORED_SHARE = 0.2
#: Statistic from which a held-out original counts as a false alarm in the printed figures.
STATISTIC_LINE = 0.5


class DeepScanNet(nn.Module):
    """Dilated convolutions (context of about 60 blocks, 480 px) plus an image-wide context vector.

    The global mean of the features, mapped by a 1x1 convolution and added back, lets every
    block be judged against the whole image, as the splice localizers of Zhou et al. (CVPR
    2018) and Wu et al. (ManTra-Net, CVPR 2019) compare a local feature with its surround.
    """

    def __init__(self, channels: int = len(CHANNELS), width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        for dilation in (1, 2, 4, 8, 16):
            layers += [nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.context = nn.Conv2d(width, width, 1)
        self.head = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.body(features)
        x = x + self.context(x.mean(dim=(2, 3), keepdim=True))
        return self.head(x)


@lru_cache(maxsize=6)
def _pixels(original: Original) -> np.ndarray:
    return load_rgb(original.path)


def _crop(original: Original, rng: np.random.Generator) -> np.ndarray:
    pixels = _pixels(original)
    top, left, h, w = aligned_crop(pixels.shape[0], pixels.shape[1], CROP, rng)
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


def _samples_of(task: tuple[Original, tuple[Original, ...], int, int]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The crops of one original: features (float16), per-block tampered share (float16), datasets used."""
    original, donors, count, seed = task
    rng = np.random.default_rng(seed_sequence(seed, "deep_scan:" + original.key))
    out = []
    stored: np.ndarray | None = None
    for _ in range(count):
        if rng.random() < STORED_SHARE:
            if stored is None:
                stored = block_features(load_image(original.path.read_bytes(), filename=original.path.name)).values
            out.append((_stored_window(stored, rng), np.zeros((CROP // BLOCK, CROP // BLOCK), np.float16), original.dataset))
            continue
        host = _crop(original, rng)
        mask = np.zeros(host.shape[:2], bool)
        used = {original.dataset}
        if rng.random() >= UNEDITED_SHARE:
            edit = str(rng.choice(list(LOCAL_EDITS)))
            if edit in NEEDS_DONOR:
                donor = donors[int(rng.integers(len(donors)))]
                used.add(donor.dataset)
                edited = LOCAL_EDITS[edit](host, _crop(donor, rng), rng)
            else:
                edited = LOCAL_EDITS[edit](host, rng)
            host, mask = edited.pixels, edited.mask
        image = load_image(encode(host, draw_encoder(rng)))
        features = block_features(image, with_history=rng.random() >= NO_HISTORY_SHARE)
        rows, cols = features.rows, features.cols
        share = mask[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))
        out.append((features.values.astype(np.float16), share.astype(np.float16), "|".join(sorted(used))))
    return out


def _stored_window(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop-sized window of a whole image's block map, history neutral as often as for crops."""
    side = CROP // BLOCK
    top = int(rng.integers(0, values.shape[1] - side + 1))
    left = int(rng.integers(0, values.shape[2] - side + 1))
    window = values[:, top : top + side, left : left + side].copy()
    if rng.random() < NO_HISTORY_SHARE:
        window[CHANNELS.index("adq")], window[CHANNELS.index("adq_valid")] = ADQ_NEUTRAL, 0.0
    return window.astype(np.float16)


def _donor_pool(original: Original, group: list[Original]) -> tuple[Original, ...]:
    """Donors for splices into ``original``: photos of the other datasets (another camera and history)."""
    return tuple(d for d in group if d.dataset != original.dataset) or tuple(group)


def _originals(settings: RunSettings) -> tuple[list[Original], list[Original]]:
    """Training and validation originals (validation holds out whole originals)."""
    _, cap, _, _ = PRESETS[settings.size]
    originals, _ = list_originals(settings.data)
    usable = [o for o in originals if o.dataset in TRAIN_SOURCES and min(o.width, o.height) >= CROP]
    train = [o for o in usable if not in_validation(o.key, settings.seed, VALIDATION_SHARE)]
    validation = [o for o in usable if in_validation(o.key, settings.seed, VALIDATION_SHARE)]
    if cap:
        train, validation = train[:cap], validation[: max(2, cap // 3)]
    return train, validation


def build_data(settings: RunSettings) -> dict[str, np.ndarray]:
    """The training and validation arrays of every training source, cached by size and seed.

    ``<split>_sources`` names the datasets whose photos each crop holds (host and donor), so
    that a fold model can leave a dataset out entirely.
    """
    return cached_npz(settings.work / f"{NAME}_{settings.size}_seed{settings.seed}_v{VERSION}.npz", lambda: _make_data(settings))


def _make_data(settings: RunSettings) -> dict[str, np.ndarray]:
    per_original = PRESETS[settings.size][0]
    train, validation = _originals(settings)
    print(f"originals: {len(train)} training, {len(validation)} validation (held out whole)", flush=True)
    arrays: dict[str, np.ndarray] = {}
    for split, group in (("train", train), ("val", validation)):
        tasks = [(o, _donor_pool(o, group), per_original, settings.seed) for o in group]
        done = timed(f"{split}: {len(tasks) * per_original} crops made")
        samples = [s for part in parallel_map(_samples_of, tasks) for s in part]
        done()
        arrays[f"{split}_x"] = np.stack([s[0] for s in samples])
        arrays[f"{split}_y"] = np.stack([s[1] for s in samples])
        arrays[f"{split}_sources"] = np.array([s[2] for s in samples])
    return arrays


def _without(data: dict[str, np.ndarray], excluded: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays minus every crop holding a photo of an ``excluded`` dataset."""
    if not excluded:
        return data
    out = {}
    for split in ("train", "val"):
        keep = np.array([not set(s.split("|")) & set(excluded) for s in data[f"{split}_sources"]], bool)
        for part in ("x", "y", "sources"):
            out[f"{split}_{part}"] = data[f"{split}_{part}"][keep]
    return out


def _batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = rng.permutation(len(x))
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        factor = int(rng.choice(POOL_FACTORS))
        xb, yb = pooled(x[idx].astype(np.float32), factor), pooled(y[idx].astype(np.float32)[:, None], factor)
        if rng.random() < 0.5:
            xb, yb = xb[..., ::-1], yb[..., ::-1]
        if rng.random() < 0.5:
            xb, yb = xb[..., ::-1, :], yb[..., ::-1, :]
        yield torch.from_numpy(xb.copy()), torch.from_numpy(yb.copy())


def predict(model: nn.Module, features: np.ndarray) -> np.ndarray:
    """Per-block probability for one ``(C, rows, cols)`` feature map."""
    with torch.no_grad():
        logits = model(torch.from_numpy(features.astype(np.float32))[None].to(device()))
    return torch.sigmoid(logits)[0, 0].cpu().numpy()


def _figures_generated(model: nn.Module, x: np.ndarray, y: np.ndarray) -> list[dict[str, str]]:
    stats_pos: list[float] = []
    stats_neg: list[float] = []
    f1s: list[float] = []
    for features, share in zip(x, y, strict=True):
        prob = predict(model, features)
        mask = share.astype(np.float32) > 0.5
        (stats_pos if mask.any() else stats_neg).append(image_statistic(prob))
        if mask.any():
            f1s.append(pixel_f1(prob, mask))
    auc = roc_auc(stats_pos, stats_neg)
    where = "crops of held-out originals (edited or not)"
    return [
        {"set": where, "measure": "image ROC AUC", "value": f"{auc:.3f}" if auc is not None else "-"},
        {"set": where, "measure": "mean block F1 at 0.5", "value": f"{np.mean(f1s):.3f}" if f1s else "-"},
    ]


def _figures_originals(model: nn.Module, validation: list[Original]) -> list[dict[str, str]]:
    """False alarms on the held-out originals themselves, whole and as stored (not re-saved)."""
    stats = []
    for original in validation:
        image = load_image(original.path.read_bytes(), filename=original.path.name)
        features = block_features(image)
        stats.append(image_statistic(predict(model, pooled(features.values, pool_factor(features.rows, features.cols)))))
    share = float(np.mean(np.asarray(stats) >= STATISTIC_LINE)) if stats else float("nan")
    return [
        {
            "set": f"held-out camera/phone originals, whole ({len(stats)})",
            "measure": f"share with statistic >= {STATISTIC_LINE}",
            "value": f"{share:.3f}",
        }
    ]


def _figures_benchmarks(model: nn.Module, settings: RunSettings) -> list[dict[str, str]]:
    rows = []
    for dataset in HELD_OUT_SETS:
        folder = settings.data / dataset
        if not (folder / "index.csv").exists():
            continue
        samples = [s for s in read_index(folder) if s.label in {"authentic", "tampered"}]
        if settings.tiny:
            samples = samples[:3] + samples[-3:]
        # (forgery?, image statistic, original it belongs to) of every scored sample
        scored: list[tuple[bool, float, str]] = []
        f1s: list[float] = []
        for sample in samples:
            try:
                image = load_image(sample.path.read_bytes(), filename=sample.path.name)
                features = block_features(image)
                factor = pool_factor(features.rows, features.cols)
                prob = predict(model, pooled(features.values, factor))
            except Exception as exc:  # a benchmark file the engine refuses is reported, not fatal
                print(f"  skipped {sample.path.name}: {exc}")
                continue
            scored.append((sample.positive, image_statistic(prob), source_group(dataset, str(sample.path), sample.source, False)))
            mask = sample.mask()
            if mask is not None and sample.positive:
                full = np.kron(prob, np.ones((BLOCK * factor, BLOCK * factor), np.float32))
                padded = np.zeros(mask.shape, np.float32)
                padded[: full.shape[0], : full.shape[1]] = full[: mask.shape[0], : mask.shape[1]]
                f1s.append(pixel_f1(padded, mask))
        labels = np.array([positive for positive, _, _ in scored], bool)
        statistics = np.array([statistic for _, statistic, _ in scored])
        auc = format_auc(statistics, labels, ~labels, [original for _, _, original in scored])
        where = f"{dataset} (never trained on)"
        rows.append({"set": where, "measure": "image ROC AUC [95 % interval]", "value": auc})
        rows.append({"set": where, "measure": f"mean pixel F1 at 0.5 ({len(f1s)} masks)", "value": f"{np.mean(f1s):.3f}" if f1s else "-"})
    return rows


def train(settings: RunSettings) -> Path:
    started = time.perf_counter()
    seed_everything(settings.seed)
    unknown = set(settings.exclude) - set(TRAIN_SOURCES)
    if unknown:
        raise SystemExit(f"--exclude takes training sources only ({', '.join(TRAIN_SOURCES)}), not {', '.join(sorted(unknown))}")
    data = _without(build_data(settings), settings.exclude)
    _, validation = _originals(settings)
    validation = [o for o in validation if o.dataset not in settings.exclude]
    _, _, epochs, width = PRESETS[settings.size]
    dev = device()
    model = DeepScanNet(width=width).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(data["train_x"]) + 15) // 16)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=max(steps, 1))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0, device=dev))
    rng = np.random.default_rng(settings.seed)
    excluded = f", without {', '.join(settings.exclude)}" if settings.exclude else ""
    print(
        f"training on {dev.type}: {len(data['train_x'])} crops, {len(data['val_x'])} validation crops, {epochs} epoch(s){excluded}",
        flush=True,
    )
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        epoch_started = time.perf_counter()
        for xb, yb in _batches(data["train_x"], data["train_y"], 16, rng):
            optimiser.zero_grad()
            loss = loss_fn(model(xb.to(dev)), yb.to(dev))
            loss.backward()
            optimiser.step()
            schedule.step()
            total, count = total + loss.item() * len(xb), count + len(xb)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f} ({time.perf_counter() - epoch_started:.0f} s)", flush=True)
    model.eval()
    figures = _figures_generated(model, data["val_x"], data["val_y"])
    if not settings.exclude:  # a fold model serves the evaluation in scripts/calibrate.py, which measures it there
        figures += _figures_originals(model, validation) + _figures_benchmarks(model, settings)
    for row in figures:
        print(f"  {row['set']:50s} {row['measure']:38s} {row['value']}")
    sources = [s for s in TRAIN_SOURCES if s not in settings.exclude]
    card = {
        "version": VERSION,
        "summary": "Per-block tamper probability from noise, DCT, blocking-grid and double-quantization traces (the `deep_scan` method).",
        "input_description": [f"`features`: float32 (1, {len(CHANNELS)}, rows, cols), one vector per 8x8 block: " + ", ".join(CHANNELS)],
        "architecture": f"6 dilated 3x3 convolutions of width {width} with batch norm, an image-wide context vector, a 1x1 head; logits out; "
        f"trained on block maps pooled by {sorted(set(POOL_FACTORS))}",
        "data_sources": sources,
        "excluded": list(settings.exclude),
        "data": [
            f"the camera and phone originals of {', '.join(sources)} (../shared/data); validation holds out 15 % of them whole",
            f"{STORED_SHARE:.0%} of the samples are windows of an original's block map as stored (not re-saved), unedited",
            f"the others are crops of {CROP} px, {1 - UNEDITED_SHARE:.0%} of them edited by forensics.synth (splice, resampled paste, blur retouch, clone stamp, inpainting, colour edit), the rest untouched",
            "every crop saved by a drawn encoder (IJG q60-98, Photoshop tables, PNG)",
            f"never trained on: {', '.join(HELD_OUT_SETS)}",
        ],
        "limits": [
            "copy-moves inside one photo keep that photo's noise and compression: the copymove method covers them",
            "trained on 384 px crops of a few hundred originals from a few dozen cameras; heavy re-compression (below q60) or resizing after the edit erases the traces it reads",
            "a sharp subject against a plain or defocused background can look to it like a pasted object or a blurred-around retouch: on CASIA's originals (animals against sky or water) it marks the animal",
        ],
        "figures": figures,
        "channels": list(CHANNELS),
    }
    return export(
        model,
        NAME,
        settings,
        inputs={"features": (1, len(CHANNELS), 16, 20)},
        outputs=["logits"],
        dynamic_axes={"features": {2: "rows", 3: "cols"}, "logits": {2: "rows", 3: "cols"}},
        card=card,
        started=started,
    )
