"""Training of the engine's learned detectors (optional ``train`` extra: PyTorch, ONNX).

One command per model, the same on a laptop CPU and on a GPU:

    .venv/bin/python -m training deep_scan            # default size
    .venv/bin/python -m training deep_scan --size tiny # seconds: the smoke test's size

Each command builds its data from ``../shared/data`` (and the generated manipulations of
:mod:`forensics.synth`), splits it by source so that no original, contributor or subject is
on both sides, trains with a fixed seed, prints validation figures, and exports the model to
``forensics/models/<name>.onnx`` with its card ``<name>.json`` (see
:mod:`forensics.learn.runtime`). The engine runs the exported file with onnxruntime only.
"""
