"""What every training command shares: seeding, threads, group splits, ONNX export with a card."""

import hashlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from forensics.learn.runtime import REFERENCE_SEED, reference_inputs
from forensics.synth.sources import stable_hash

T = TypeVar("T")
R = TypeVar("R")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_WORK = REPO / "out" / "train"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """One training run: where the data is, where caches go, the seed and the size preset."""

    data: Path
    work: Path
    models: Path
    seed: int
    size: str
    #: Source datasets left out of training entirely (a fold model for leave-one-dataset-out figures).
    exclude: tuple[str, ...] = ()

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and use deterministic kernels where they exist."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def device() -> torch.device:
    """The first CUDA device when there is one, else the CPU: the command is the same on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def in_validation(group: str, seed: int, share: float) -> bool:
    """Whether the group (an original, a contributor, a subject) is held out for validation.

    Decided by a stable hash of the group alone, so every image of one group is on the same side.
    """
    return (stable_hash(seed, "validation", group) % 10_000) < share * 10_000


def commit() -> str:
    """The commit the code was trained at, with ``+dirty`` when its code had changes. The shipped
    models' folder is not code: the export writes the new files there before the card is made,
    and a run that retrains several models replaces them one after the other."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "forensics", "training", ":(exclude)forensics/models"],
            cwd=REPO, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def export(
    model: torch.nn.Module,
    name: str,
    settings: RunSettings,
    *,
    inputs: dict[str, Sequence[int]],
    outputs: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    card: dict[str, Any],
    started: float,
) -> Path:
    """Export ``model`` to ``<models>/<name>.onnx`` and write its card ``<name>.json`` and ``<name>.md``.

    The card stores the outputs of onnxruntime on :func:`reference_inputs` of the given shapes,
    after checking that they agree with the torch model's, so a test can prove the shipped
    file still computes what was trained.
    """
    import onnxruntime

    model = model.cpu().eval()
    refs = reference_inputs(inputs)
    example = tuple(torch.from_numpy(refs[k]) for k in inputs)
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        example,
        buffer,
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_axes=dynamic_axes,
        opset_version=17,
        dynamo=False,
    )
    data = buffer.getvalue()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, refs)
    with torch.no_grad():
        torch_out = model(*example)
    torch_out = [torch_out] if isinstance(torch_out, torch.Tensor) else list(torch_out)
    deviation = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(onnx_out, torch_out, strict=True))
    if deviation > 1e-3:
        raise RuntimeError(f"the ONNX export of {name} deviates from the torch model by {deviation}")
    settings.models.mkdir(parents=True, exist_ok=True)
    onnx_path = settings.models / f"{name}.onnx"
    onnx_path.write_bytes(data)
    full_card = {
        "name": name,
        **card,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "command": f"python -m training {name} --size {settings.size} --seed {settings.seed}"
        + "".join(f" --exclude {d}" for d in settings.exclude),
        "commit": commit(),
        "trained_on": f"{platform.machine()} {device().type}, torch {torch.__version__}, python {sys.version.split()[0]}",
        "training_seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d"),
        "inputs": {k: list(v) for k, v in inputs.items()},
        "outputs": list(outputs),
        "reference": {"seed": REFERENCE_SEED, "outputs": [np.round(o, 6).ravel().tolist() for o in onnx_out], "tolerance": 1e-4},
    }
    (settings.models / f"{name}.json").write_text(json.dumps(full_card, indent=1) + "\n")
    (settings.models / f"{name}.md").write_text(model_card_markdown(full_card))
    return onnx_path


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable model card (the JSON card minus the reference numbers)."""
    lines = [f"# Model card: `{card['name']}` {card['version']}", "", card["summary"], ""]
    for title, key in (
        ("Input", "input_description"),
        ("Architecture", "architecture"),
        ("Training data", "data"),
        ("Known limits", "limits"),
    ):
        value = card.get(key)
        if value:
            lines += [f"## {title}", ""]
            lines += [f"- {v}" for v in value] if isinstance(value, list) else [str(value)]
            lines.append("")
    lines += ["## Figures (validation, printed by the command)", "", "| set | measure | value |", "|---|---|---|"]
    for row in card.get("figures", []):
        lines.append(f"| {row['set']} | {row['measure']} | {row['value']} |")
    lines += [
        "",
        "## Provenance",
        "",
        f"- Command: `{card['command']}` (from the repository root, with the `train` extra installed)",
        f"- Commit: `{card['commit']}`, date {card['date']}, {card['trained_on']}, {card['training_seconds']} s",
        f"- File: `{card['name']}.onnx`, {card['bytes']} bytes, SHA-256 `{card['sha256']}`",
        "",
    ]
    return "\n".join(lines)


def timed(label: str) -> Callable[[], None]:
    """Print how long a phase took when the returned function is called."""
    start = time.perf_counter()
    return lambda: print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)


def parallel_map(function: Callable[[T], R], tasks: Sequence[T], chunksize: int = 1) -> list[R]:
    """``function`` over ``tasks`` in up to two processes (this machine's cores; more would only
    share them), or in this process when one would do."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        cores = os.cpu_count() or 1
    workers = max(1, min(2, cores, len(tasks)))
    if workers == 1:
        return [function(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, tasks, chunksize=chunksize))


def cached_npz(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``, else those ``build`` makes, stored there first (a training
    data cache: its name must hold everything the arrays depend on)."""
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays
