"""Load the shipped ONNX models and run them with ``onnxruntime``.

Each model ``<name>`` is two files in :data:`MODELS_DIR`: ``<name>.onnx`` and its card
``<name>.json`` (written by ``python -m training <name>``: version, SHA-256 of the ONNX file,
input layout, training data, command, commit, figures, limits, and reference outputs on fixed
inputs). A file that is missing, altered or unreadable raises :class:`ModelUnavailable`, which
the method turns into an error finding for that method alone.

Sessions run single-threaded: the worker already runs methods in parallel processes, and
onnxruntime's own thread pool would only compete with them.
"""

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: Seed of the fixed inputs whose outputs every card stores (see :func:`reference_inputs`).
REFERENCE_SEED = 1234


class ModelUnavailable(RuntimeError):
    """The model file or its card is missing, does not match its checksum, or does not load."""


@dataclass(frozen=True, slots=True)
class OnnxModel:
    """A loaded model: its card and an inference session."""

    name: str
    card: dict[str, Any]
    session: Any

    @property
    def version(self) -> str:
        return str(self.card["version"])

    def run(self, **inputs: np.ndarray) -> list[np.ndarray]:
        """The model's outputs, in the card's order, for float32 ``inputs`` named as in the card."""
        return self.session.run(None, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})


_cache: dict[tuple[str, Path], OnnxModel] = {}
_lock = threading.Lock()


def card_path(name: str, folder: Path = MODELS_DIR) -> Path:
    return folder / f"{name}.json"


def load_model(name: str, folder: Path = MODELS_DIR) -> OnnxModel:
    """The model ``name``, loaded once per process and checked against its card's SHA-256."""
    key = (name, folder)
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = _cache[key] = _load(name, folder)
        return model


def reference_inputs(shapes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fixed float32 inputs for the reproduction check: standard normal draws from :data:`REFERENCE_SEED`."""
    rng = np.random.default_rng(REFERENCE_SEED)
    return {name: rng.standard_normal(tuple(shape)).astype(np.float32) for name, shape in shapes.items()}


def session_options() -> Any:
    """The options of every model session: one thread (the worker already runs methods in
    parallel processes), no memory arena (buffers go back after each run instead of staying
    at their peak), and exact INT8 products (``session.x64quantprecision``): on x86 CPUs
    without VNNI onnxruntime otherwise sums pairs of u8 x s8 products in saturating 16-bit
    registers, so a quantized model such as the CLIP encoder would give another output on such
    a machine (microsoft/onnxruntime issues 6004 and 14642); float models are unaffected."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.x64quantprecision", "1")
    return options


def _load(name: str, folder: Path) -> OnnxModel:
    import onnxruntime

    onnx_path, card_file = folder / f"{name}.onnx", card_path(name, folder)
    try:
        card = json.loads(card_file.read_text())
        data = onnx_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelUnavailable(f"model {name!r} is not installed: {Path(exc.filename).name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"model {name!r} cannot be read: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.get("sha256"):
        raise ModelUnavailable(
            f"model {name!r} is corrupt: {onnx_path.name} has SHA-256 {digest[:12]}..., its card says {str(card.get('sha256'))[:12]}..."
        )
    try:
        session = onnxruntime.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a malformed graph
        raise ModelUnavailable(f"model {name!r} does not load: {exc}") from None
    return OnnxModel(name, card, session)
