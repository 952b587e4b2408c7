"""A linear probe on frozen CLIP embeddings: the shared part of the ``ai_pixels`` and ``recapture`` heads.

Following Ojha, Li & Lee ("Towards universal fake image detectors that generalize across
generative models", CVPR 2023), the encoder (:mod:`forensics.learn.clip_encoder`; Radford et
al. 2021) stays frozen and only a logistic-regression head ``nn.Linear(d, 1)`` on one part of its
features (the 512-d embedding, or the 768-d class token) is fitted
(L2-penalised, class-balanced, full-batch L-BFGS): a linear read-out of a representation that
was never trained on the task has little room to memorise one source's quirks. Embeddings are
computed once per file through the engine's own decoder and cached on disk.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from forensics.image import load_image
from forensics.learn import clip_encoder
from training.common import RunSettings, export, timed

L2 = 1e-3
#: Cached per image: the encoder's features, then pixel count and is-PNG (for the size/format checks).
EMBED_ROW = clip_encoder.FEATURES_DIM + 2


@dataclass(frozen=True, slots=True)
class Source:
    """One image to embed: its cache key, file name (for the decoder) and how to read its bytes."""

    key: str
    name: str
    read: Callable[[], bytes]


def embeddings(sources: list[Source], cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Features (:func:`clip_encoder.embed`), pixel counts and is-PNG flags of the sources the
    engine decodes, and their indices in ``sources`` (a file the engine refuses is reported and
    left out). Cached per key; a cached row of another layout is computed again."""
    stored: dict[str, np.ndarray] = {k: v for k, v in np.load(cache).items() if v.shape == (EMBED_ROW,)} if cache.exists() else {}
    done = timed(f"embeddings ({sum(1 for s in sources if s.key not in stored)} to compute)")
    kept, new = [], 0
    for index, source in enumerate(sources):
        if source.key not in stored:
            try:
                image = load_image(source.read(), filename=source.name)
            except Exception as exc:  # a file the engine refuses is reported and left out
                print(f"  skipped {source.key}: {exc}")
                stored[source.key] = np.full(EMBED_ROW, np.nan, np.float32)
                continue
            h, w = image.rgb.shape[:2]
            png = float(image.format.value == "png")
            stored[source.key] = np.concatenate([clip_encoder.embed(image.rgb), [h * w, png]]).astype(np.float32)
            new += 1
            if new % 50 == 0:
                _save(cache, stored)
                print(f"  {new} embedded", flush=True)
        if np.isfinite(stored[source.key]).all():
            kept.append(index)
    if new:
        _save(cache, stored)
    done()
    rows = np.stack([stored[sources[i].key] for i in kept]) if kept else np.zeros((0, EMBED_ROW), np.float32)
    return rows[:, : clip_encoder.FEATURES_DIM], rows[:, -2], rows[:, -1], kept


def _save(path: Path, stored: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **stored)
    tmp.replace(path)


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2) -> nn.Linear:
    """Class-balanced L2-penalised logistic regression, fitted to convergence by full-batch L-BFGS."""
    head = nn.Linear(x.shape[1], 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))[:, None]
    positives = float(y.mean())
    weights = torch.where(yt > 0.5, 0.5 / positives, 0.5 / (1 - positives))
    optimiser = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-7, history_size=20, line_search_fn="strong_wolfe"
    )
    loss_fn = nn.BCEWithLogitsLoss(weight=weights)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(head(xt), yt) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return head.eval()


def logits(head: nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x.astype(np.float32)))[:, 0].numpy()


def export_head(
    head: nn.Linear, name: str, settings: RunSettings, card: dict[str, Any], started: float, input_name: str = "embedding"
) -> Path:
    """Export the head as ``<name>.onnx`` (input ``input_name`` (batch, d), output ``logits``) with its card."""
    return export(
        head,
        name,
        settings,
        inputs={input_name: (1, head.in_features)},
        outputs=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
        card=card,
        started=started,
    )
