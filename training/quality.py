"""Train the image-quality model: a small MLP from blur, noise and compression measures to a 0-100 reading.

Data: crops (at most :data:`CROP` px) of the genuine photos of :data:`TRAIN_SOURCES`, each
degraded by a seeded draw of what lowers a photo's quality in the wild, alone or combined,
in this order: down-then-up scaling (factor 1-4, a web-sized copy enlarged again), Gaussian
blur (sigma 0-4 px: focus, motion, a smoothing filter), additive Gaussian noise (sigma 0-25
grey levels per channel: a dark scene, a cheap sensor), and JPEG re-compression (IJG quality
10-95; a crop left uncompressed is saved as PNG or as a JPEG of quality 90-98). The recipe is
the synthetic-distortion one of the quality databases LIVE (Sheikh, Sabir & Bovik, IEEE TIP
2006) and TID2013 (Ponomarenko et al., Signal Processing: Image Communication 2015), whose
distortion types are the same, with the reading defined from the parameters instead of
observers' opinions (a training set of a few thousand crops made in a minute or two).

Target (documented in the model card), each penalty 0 to its maximum and saturating:

* blur: ``s = sqrt(sigma_blur^2 + (0.6 (factor - 1))^2)`` (down-up scaling by ``factor`` acts
  like a blur), ``P_blur = 70 * clip((s - 0.3) / 2.7, 0, 1) ^ 0.8``;
* noise: ``P_noise = 65 * clip(sigma_noise / 25, 0, 1) ^ 0.7``;
* compression: ``P_jpeg = 70 * clip((90 - q) / 80, 0, 1)``, ``q = 100`` when not re-compressed;
* ``quality = 100 * (1 - P_blur/100) (1 - P_noise/100) (1 - P_jpeg/100)``.

So a sigma-2 blur alone reads about 52 (fair), sigma 3 about 30 (poor), JPEG q15 about 34,
noise sigma 25 about 35. The untouched original counts as 100: its own softness, noise and
compression are the reference (the photos are camera and phone originals).

The network regresses the reading and the three penalties (the latter name the cause in the
report) from :func:`forensics.learn.quality_features.quality_features`, the very function the
engine calls, of the crop as decoded by :func:`forensics.image.load_image`. Validation holds
out whole originals (``in_validation`` on the original's ``dataset:file`` key).
"""

import argparse
import io
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from forensics.dataset import read_index
from forensics.image import load_image
from forensics.learn.quality_features import FEATURE_NAMES, MIN_SIDE, quality_features
from forensics.methods.quality import OUTPUTS, VERSION
from forensics.synth.sources import Original, aligned_crop, list_originals, load_rgb, seed_sequence
from training.common import RunSettings, cached_npz, export, in_validation, parallel_map, seed_everything, timed

NAME = "quality"
#: Genuine photos the crops are made from: camera and phone originals, and CoMoFoD's lossless originals.
TRAIN_SOURCES = frozenset({"dresden_natural", "recapture_phone", "exif_samples_ianare", "mapo80_exif_spoof", "comofod_subset"})
#: Authentic photos never trained on, read whole for the per-dataset figures.
HELD_OUT_SETS = ("casia2_samples", "noso_copymove", "cvip_copymove")
CROP = 512
VALIDATION_SHARE = 0.2
#: Per preset: crops per original, originals cap, epochs.
PRESETS = {"default": (14, None, 200), "tiny": (3, 6, 20)}
#: Probability that each degradation is applied to a crop, and share of crops left untouched.
APPLY = 0.45
CLEAN_SHARE = 0.12
HIDDEN = 64


def target(blur: float, noise: float, factor: float, jpeg_quality: float) -> tuple[float, float, float, float]:
    """(quality, blur penalty, noise penalty, compression penalty), all 0-100, from the degradation parameters."""
    spread = float(np.hypot(blur, 0.6 * (factor - 1.0)))
    p_blur = 70.0 * float(np.clip((spread - 0.3) / 2.7, 0.0, 1.0)) ** 0.8
    p_noise = 65.0 * float(np.clip(noise / 25.0, 0.0, 1.0)) ** 0.7
    p_jpeg = 70.0 * float(np.clip((90.0 - jpeg_quality) / 80.0, 0.0, 1.0))
    quality = 100.0 * (1 - p_blur / 100) * (1 - p_noise / 100) * (1 - p_jpeg / 100)
    return quality, p_blur, p_noise, p_jpeg


def degrade(rgb: np.ndarray, rng: np.random.Generator) -> tuple[bytes, tuple[float, float, float, float]]:
    """A drawn degradation of ``rgb`` as a file, and its parameters (blur sigma, noise sigma, scale factor, JPEG quality)."""
    blur = noise = 0.0
    factor, quality = 1.0, 100.0
    clean = rng.random() < CLEAN_SHARE
    h, w = rgb.shape[:2]
    out = rgb
    if not clean and rng.random() < APPLY:
        factor = float(rng.uniform(1.0, 4.0))
        small = cv2.resize(out, (max(8, round(w / factor)), max(8, round(h / factor))), interpolation=cv2.INTER_AREA)
        up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(rng.integers(2))]
        out = cv2.resize(small, (w, h), interpolation=up)
    if not clean and rng.random() < APPLY:
        blur = float(rng.uniform(0.0, 4.0))
        if blur > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), blur)
    if not clean and rng.random() < APPLY:
        noise = float(rng.uniform(0.0, 25.0))
        out = np.clip(out.astype(np.float32) + rng.normal(0.0, noise, out.shape).astype(np.float32), 0, 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    if not clean and rng.random() < APPLY:
        quality = float(rng.integers(10, 96))
        Image.fromarray(out).save(buffer, format="JPEG", quality=int(quality))
    elif rng.random() < 0.5:
        Image.fromarray(out).save(buffer, format="PNG")
    else:
        Image.fromarray(out).save(buffer, format="JPEG", quality=int(rng.integers(90, 99)))
    return buffer.getvalue(), (blur, noise, factor, quality)


def features_of(data: bytes) -> np.ndarray:
    """What the engine computes: the features of the file as :func:`load_image` decodes it."""
    image = load_image(data)
    return quality_features(image.luma, image.jpeg.table_for(0) if image.jpeg is not None else None)


@lru_cache(maxsize=4)
def _pixels(original: Original) -> np.ndarray:
    return load_rgb(original.path)


def _samples_of(task: tuple[Original, int, int]) -> tuple[list[np.ndarray], list[tuple[float, ...]], list[tuple[float, ...]]]:
    """Features, targets and parameters of the degraded crops of one original."""
    original, count, seed = task
    rng = np.random.default_rng(seed_sequence(seed, "quality:" + original.key))
    pixels = _pixels(original)
    xs, ys, params = [], [], []
    for _ in range(count):
        top, left, h, w = aligned_crop(pixels.shape[0], pixels.shape[1], CROP, rng)
        crop = np.ascontiguousarray(pixels[top : top + h, left : left + w])
        data, p = degrade(crop, rng)
        xs.append(features_of(data))
        ys.append(target(p[0], p[1], p[2], p[3]))
        params.append(p)
    return xs, ys, params


def _originals(settings: RunSettings) -> tuple[list[Original], list[Original]]:
    _, cap, _ = PRESETS[settings.size]
    originals, _ = list_originals(settings.data)
    usable = [o for o in originals if o.dataset in TRAIN_SOURCES]
    train = [o for o in usable if not in_validation(o.key, settings.seed, VALIDATION_SHARE)]
    validation = [o for o in usable if in_validation(o.key, settings.seed, VALIDATION_SHARE)]
    if cap:  # the smallest photos: the tiny preset is a smoke test of seconds

        def small(group: list[Original]) -> list[Original]:
            return sorted(group, key=lambda o: (o.width * o.height, o.key))

        train, validation = small(train)[:cap], small(validation)[: max(2, cap // 3)]
    return train, validation


def build_data(settings: RunSettings) -> dict[str, np.ndarray]:
    """Training and validation arrays, cached in the work folder by size, seed and version."""
    return cached_npz(settings.work / f"{NAME}_{settings.size}_seed{settings.seed}_v{VERSION}.npz", lambda: _make_data(settings))


def _make_data(settings: RunSettings) -> dict[str, np.ndarray]:
    per_original = PRESETS[settings.size][0]
    train, validation = _originals(settings)
    print(f"originals: {len(train)} training, {len(validation)} validation (held out whole)", flush=True)
    arrays: dict[str, np.ndarray] = {}
    for split, group in (("train", train), ("val", validation)):
        tasks = [(o, per_original, settings.seed) for o in group]
        done = timed(f"{split}: {len(tasks) * per_original} crops made")
        parts = parallel_map(_samples_of, tasks)
        done()
        arrays[f"{split}_x"] = np.stack([x for part in parts for x in part[0]]).astype(np.float32)
        arrays[f"{split}_y"] = np.asarray([y for part in parts for y in part[1]], np.float32)
        arrays[f"{split}_p"] = np.asarray([p for part in parts for p in part[2]], np.float32)
    return arrays


class QualityNet(nn.Module):
    """Standardize the features (statistics of the training set, kept in the graph), two hidden layers, four sigmoid outputs x 100."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(np.maximum(std, 1e-3).astype(np.float32)))
        n = len(FEATURE_NAMES)
        self.body = nn.Sequential(nn.Linear(n, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, len(OUTPUTS)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return 100.0 * torch.sigmoid(self.body((features - self.mean) / self.std))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        values, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        first = np.cumsum(counts) - counts
        return (first + (counts - 1) / 2.0)[inverse]

    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


def _predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).numpy()


def _figures_generated(model: nn.Module, data: dict[str, np.ndarray]) -> list[dict[str, str]]:
    pred, y, params = _predict(model, data["val_x"]), data["val_y"], data["val_p"]
    where = "degraded crops, held-out originals"
    rows = [
        {"set": where, "measure": f"quality MAE (0-100, {len(y)} crops)", "value": f"{np.abs(pred[:, 0] - y[:, 0]).mean():.2f}"},
        {"set": where, "measure": "quality Spearman correlation", "value": f"{spearman(pred[:, 0], y[:, 0]):.3f}"},
    ]
    for k, name in enumerate(OUTPUTS[1:], start=1):
        rows.append({"set": where, "measure": f"{name} penalty MAE", "value": f"{np.abs(pred[:, k] - y[:, k]).mean():.2f}"})
    untouched = (params[:, 0] == 0) & (params[:, 1] == 0) & (params[:, 2] == 1) & (params[:, 3] == 100)
    if untouched.any():
        rows.append(
            {
                "set": where,
                "measure": f"mean reading of untouched crops ({int(untouched.sum())})",
                "value": f"{pred[untouched, 0].mean():.1f}",
            }
        )
    poor = y[:, 0] < 40
    if poor.any() and (~poor).any():
        rows.append({"set": where, "measure": "share of target < 40 read < 40", "value": f"{(pred[poor, 0] < 40).mean():.3f}"})
        rows.append({"set": where, "measure": "share of target >= 70 read < 40", "value": f"{(pred[y[:, 0] >= 70, 0] < 40).mean():.3f}"})
    return rows


def _figures_originals(model: nn.Module, settings: RunSettings) -> list[dict[str, str]]:
    """Mean reading per dataset on whole, untouched authentic photos (the training sources' and held-out sets')."""
    originals, _ = list_originals(settings.data)
    by_set: dict[str, list[Path]] = {}
    for o in originals:
        if o.dataset in TRAIN_SOURCES:
            by_set.setdefault(o.dataset, []).append(o.path)
    for dataset in HELD_OUT_SETS:
        folder = settings.data / dataset
        if (folder / "index.csv").exists():
            by_set[dataset] = [s.path for s in read_index(folder) if s.label == "authentic"]
    rows = []
    for dataset, paths in sorted(by_set.items()):
        if settings.tiny:
            paths = sorted(paths, key=lambda p: p.stat().st_size)[:1]
        readings = []
        for path in paths:
            try:
                image = load_image(path.read_bytes(), filename=path.name)
                if min(image.width, image.height) < MIN_SIDE:
                    continue
                x = quality_features(image.luma, image.jpeg.table_for(0) if image.jpeg is not None else None)
            except Exception as exc:  # a file the engine refuses is reported, not fatal
                print(f"  skipped {path.name}: {exc}")
                continue
            readings.append(_predict(model, x[None])[0, 0])
        if readings:
            label = "(trained on crops)" if dataset in TRAIN_SOURCES else "(never trained on)"
            rows.append(
                {
                    "set": f"{dataset} authentic, whole {label}",
                    "measure": f"mean reading ({len(readings)} photos; share < 40)",
                    "value": f"{np.mean(readings):.1f} ({np.mean(np.asarray(readings) < 40):.2f})",
                }
            )
    return rows


def train(settings: RunSettings) -> Path:
    started = time.perf_counter()
    seed_everything(settings.seed)
    data = build_data(settings)
    _, _, epochs = PRESETS[settings.size]
    x, y = torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"])
    model = QualityNet(data["train_x"].mean(axis=0), data["train_x"].std(axis=0))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 128
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=max(steps, 1))
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0])
    generator = torch.Generator().manual_seed(settings.seed)
    print(f"training on cpu: {len(x)} crops, {len(data['val_x'])} validation crops, {epochs} epochs", flush=True)
    done = timed("training")
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            optimiser.zero_grad()
            loss = (nn.functional.smooth_l1_loss(model(x[idx]), y[idx], reduction="none", beta=2.0) * weights).mean()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % max(1, epochs // 5) == 0:
            print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.3f}", flush=True)
    done()
    model.eval()
    figures = _figures_generated(model, data) + _figures_originals(model, settings)
    for row in figures:
        print(f"  {row['set']:58s} {row['measure']:45s} {row['value']}")
    card: dict[str, Any] = {
        "version": VERSION,
        "summary": "A 0-100 image-quality reading (blur, noise, compression) of the `quality` method; information only, never a tamper score.",
        "input_description": [
            f"`features`: float32 (N, {len(FEATURE_NAMES)}) from forensics.learn.quality_features: " + ", ".join(FEATURE_NAMES)
        ],
        "architecture": f"feature standardization in the graph, MLP {len(FEATURE_NAMES)}-{HIDDEN}-{HIDDEN}-{len(OUTPUTS)} with GELU, "
        f"sigmoid x 100 outputs: {', '.join(OUTPUTS)}",
        "data": [
            f"crops of at most {CROP} px of the authentic photos of {', '.join(sorted(TRAIN_SOURCES))} (../shared/data)",
            f"each degradation applied with probability {APPLY} ({CLEAN_SHARE:.0%} of crops untouched): down-up scaling x1-4, "
            "Gaussian blur sigma 0-4, Gaussian noise sigma 0-25, JPEG q10-95 (else PNG or JPEG q90-98)",
            "target: P_blur = 70 clip((hypot(blur, 0.6 (factor-1)) - 0.3) / 2.7, 0, 1)^0.8; P_noise = 65 clip(noise/25, 0, 1)^0.7; "
            "P_jpeg = 70 clip((90-q)/80, 0, 1); quality = 100 (1-P_blur/100)(1-P_noise/100)(1-P_jpeg/100)",
            f"validation holds out {VALIDATION_SHARE:.0%} of the originals whole; never trained on: {', '.join(HELD_OUT_SETS)}",
        ],
        "limits": [
            "the reading is relative to a camera original (100); an original's own noise, softness or compression is not penalized by the target, "
            "so a poor original can read well",
            "synthetic degradations only (no motion blur, denoising, sharpening or chroma loss); shallow depth of field reads as sharp "
            "because the sharpest tiles count",
            "information only: the method reports no tamper score",
        ],
        "figures": figures,
        "features": list(FEATURE_NAMES),
        "output_order": list(OUTPUTS),
    }
    return export(
        model,
        NAME,
        settings,
        inputs={"features": (1, len(FEATURE_NAMES))},
        outputs=["readings"],
        dynamic_axes={"features": {0: "n"}, "readings": {0: "n"}},
        card=card,
        started=started,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""
