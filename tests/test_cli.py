"""The ``forensics analyze`` contract other tools depend on, run as a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.cli import main

from .conftest import jpeg_bytes, png_bytes


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "forensics.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture()
def inputs(tmp_path: Path, astronaut: np.ndarray) -> Path:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "photo.jpg").write_bytes(jpeg_bytes(astronaut))
    (folder / "nested" / "crop.png").write_bytes(png_bytes(astronaut[:200, :300]))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_json_lines_for_every_input_including_unreadable(inputs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    result = run_cli("analyze", "--json", str(inputs), str(bad))
    assert result.returncode == 2, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(r["file"]).name: r for r in records}
    assert set(by_file) == {"photo.jpg", "crop.png", "broken.jpg"}  # notes.txt is not an image: not picked from a folder
    for name in ("photo.jpg", "crop.png"):
        r = by_file[name]
        assert 0 <= r["tamper_score"] <= 100
        assert r["verdict"] in {"likely_manipulated", "no_manipulation_detected"}
        assert len(r["sha256"]) == 64 and r["seconds"] > 0
        for f in r["findings"]:
            assert set(f) >= {"method", "status", "score", "label", "summary", "details", "seconds"}
    broken = by_file["broken.jpg"]
    assert broken["tamper_score"] is None and broken["error"].startswith("VALIDATION_ERROR")
    assert len(broken["sha256"]) == 64


def test_exit_zero_when_all_read_and_table_by_default(inputs: Path) -> None:
    result = run_cli("analyze", str(inputs / "photo.jpg"))
    assert result.returncode == 0, result.stderr
    assert "photo.jpg" in result.stdout and "score" in result.stdout.splitlines()[0]


def test_maps_are_gray_at_input_size_and_out_holds_reports(inputs: Path, tmp_path: Path) -> None:
    maps, out = tmp_path / "maps", tmp_path / "out"
    result = run_cli("analyze", "--maps", str(maps), "--out", str(out), str(inputs))
    assert result.returncode == 0, result.stderr
    with Image.open(maps / "crop.png") as m:
        assert m.mode == "L" and m.size == (300, 200)
    with Image.open(maps / "photo.png") as m:
        assert m.mode == "L" and m.size == (512, 512)
    report = json.loads((out / "photo" / "report.json").read_text())
    assert report["image"]["width"] == 512 and report["findings"]
    assert any(p.name.startswith("heatmap_") for p in (out / "photo").iterdir())


def test_unknown_method_is_a_usage_error(inputs: Path) -> None:
    result = run_cli("analyze", "--methods", "nope", str(inputs / "photo.jpg"))
    assert result.returncode == 1 and "unknown method" in result.stderr


def _index(folder: Path, samples: list) -> Path:
    """A labelled folder whose index.csv points at the reference files by absolute path."""
    folder.mkdir()
    lines = ["file,label,mask_file,kind,source"] + [f"{s.path},{s.label},{s.mask_path or ''},{s.kind},{s.source}" for s in samples]
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_evaluate_refits_leave_one_dataset_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import dataset

    cvip = dataset("cvip_copymove")
    noso = dataset("noso_copymove")
    pick = lambda samples: [s for s in samples if s.positive][:3] + [s for s in samples if s.label == "authentic"][:3]  # noqa: E731
    first = _index(tmp_path / "first", pick(cvip))
    second = _index(tmp_path / "second", pick(noso))
    code = main(["evaluate", "--methods", "copymove", "--no-selection", "--out", str(tmp_path / "out"), str(first), str(second)])
    out = capsys.readouterr().out
    assert code == 0
    assert "## first (fused: held out from the shipped calibration; fused_lodo: refitted without it)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("fused_lodo")]
    assert len(rows) == 2 and all(r[1:3] == ["3", "3"] for r in rows)
    for r in rows:  # the AUC, then its grouped-bootstrap interval
        low, high = map(float, r[4].strip("[]").split("-"))
        assert low <= float(r[3]) <= high
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 12 and all("fused_lodo" in r["score"] for r in results)


#: Distributions of the service extra (and the service's own packages): the engine's CLI needs none of them.
SERVICE_ONLY = ("api", "service", "worker", "fastapi", "starlette", "uvicorn", "python_multipart", "pydantic", "pydantic_settings",
                "sqlalchemy", "alembic", "psycopg2", "celery", "kombu", "billiard", "redis", "boto3", "botocore", "httpx",
                "standardwebhooks", "prometheus_client")
_WITHOUT_SERVICE = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVICE_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
from forensics.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_analyze_runs_without_the_service_extra_installed(inputs: Path) -> None:
    """``forensics analyze`` needs only the runtime dependencies: the service's are made unimportable."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_SERVICE, "analyze", "--json", str(inputs / "photo.jpg")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] in {"likely_manipulated", "no_manipulation_detected"}
