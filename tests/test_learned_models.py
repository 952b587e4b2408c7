"""The shipped ONNX models: each reproduces its card's reference outputs, is documented, and
fails loudly (never silently) when its file is missing or altered; one training step runs."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forensics.learn.runtime import MODELS_DIR, ModelUnavailable, load_model, reference_inputs

from .conftest import REPO, SHARED_DATA

CARDS = sorted(MODELS_DIR.glob("*.json"))
#: What every model card must state (the issue's "data, training command, commit, figures, known limits").
CARD_FIELDS = ("version", "summary", "data", "command", "commit", "figures", "limits", "sha256", "inputs", "reference")
MAX_BYTES = 30 * 1024 * 1024


def test_models_are_shipped() -> None:
    assert "deep_scan" in {c.stem for c in CARDS}


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem for c in CARDS])
def test_model_reproduces_its_reference_outputs(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    assert all(card.get(key) for key in CARD_FIELDS), [k for k in CARD_FIELDS if not card.get(k)]
    assert card_path.with_suffix(".onnx").stat().st_size <= MAX_BYTES
    assert card_path.with_suffix(".md").exists()
    model = load_model(card_path.stem)
    outputs = model.run(**reference_inputs(card["inputs"]))
    for got, expected in zip(outputs, card["reference"]["outputs"], strict=True):
        np.testing.assert_allclose(got.ravel(), np.asarray(expected, np.float32), atol=card["reference"]["tolerance"])


def _copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(MODELS_DIR / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def test_altered_model_file_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "deep_scan")
    data = bytearray((folder / "deep_scan.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "deep_scan.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="corrupt"):
        load_model("deep_scan", folder)


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "deep_scan")
    (folder / "deep_scan.onnx").unlink()
    with pytest.raises(ModelUnavailable, match=r"not installed: deep_scan\.onnx is missing"):
        load_model("deep_scan", folder)


def test_unloadable_model_with_matching_checksum_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "deep_scan")
    garbage = b"not an onnx graph"
    (folder / "deep_scan.onnx").write_bytes(garbage)
    card = json.loads((folder / "deep_scan.json").read_text())
    card["sha256"] = hashlib.sha256(garbage).hexdigest()
    (folder / "deep_scan.json").write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match="does not load"):
        load_model("deep_scan", folder)


def test_one_training_run_at_tiny_size_exports_a_working_model(tmp_path: Path) -> None:
    """``python -m training deep_scan --size tiny``: data from the reference set, one epoch, export, card."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data {SHARED_DATA} is absent")
    models = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, "-m", "training", "deep_scan", "--size", "tiny", "--work", str(tmp_path / "work"), "--models", str(models)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image ROC AUC" in result.stdout and "never trained on" in result.stdout
    card = json.loads((models / "deep_scan.json").read_text())
    assert card["command"] == "python -m training deep_scan --size tiny --seed 0"
    model = load_model("deep_scan", models)
    outputs = model.run(**reference_inputs(card["inputs"]))
    np.testing.assert_allclose(outputs[0].ravel(), np.asarray(card["reference"]["outputs"][0], np.float32), atol=1e-4)
