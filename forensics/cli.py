"""The ``forensics`` command: analyse files with no server, evaluate on labelled folders, serve.

``forensics analyze [--json] [--maps DIR] [--out DIR] PATH...`` is a contract other tools
depend on; see README.md. Exit status: 0 when every input was analysed, 2 when some could
not be read (the others are still reported), 1 on a usage error.
"""

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from forensics.errors import ForensicsError
from forensics.formats import IMAGE_EXTENSIONS, SNIFF_BYTES, sniff_format
from forensics.image import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from forensics.methods import REGISTRY, get_method
from forensics.methods.base import Method
from forensics.options import AnalysisOptions, Sensitivity
from forensics.pipeline import Report, analyze

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_UNREADABLE = 2

def _looks_like_image(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    try:
        with path.open("rb") as fh:
            sniff_format(fh.read(SNIFF_BYTES))
        return True
    except (OSError, ForensicsError):
        return False


def expand_inputs(paths: Sequence[str]) -> Iterator[tuple[str, Path]]:
    """(name as given or found, path) for every input; folders are walked recursively for images."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if _looks_like_image(found):
                    yield str(found), found
        else:
            yield given, path


def _sha256(data: bytes | None) -> str | None:
    """The file's hash for an error record (a report carries its own), None when it was not read."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def _error_record(name: str, sha256: str | None, error: str, seconds: float) -> dict[str, Any]:
    return {"file": name, "sha256": sha256, "tamper_score": None, "verdict": None, "error": error, "findings": [], "seconds": round(seconds, 3)}


def _write_outputs(report: Report, stem: str, maps_dir: Path | None, out_dir: Path | None) -> None:
    from forensics import render

    fused = report.fused.heatmap
    if maps_dir is not None:
        size = (report.image.width, report.image.height)
        pixels = render.to_gray(fused, size) if fused is not None else np.zeros((size[1], size[0]), np.uint8)
        (maps_dir / f"{stem}.png").write_bytes(render.encode_png(pixels))
    if out_dir is not None:
        folder = out_dir / stem
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
        for name, data in render.report_artifacts(report).items():
            (folder / name).write_bytes(data)


def _table_row(record: dict[str, Any]) -> str:
    name = record["file"] if len(record["file"]) <= 48 else "…" + record["file"][-47:]
    if record.get("error"):
        return f"{name:<48}  {'-':>5}  {'unreadable':<26}  {record['error']}"
    flagged = [f["method"] for f in record["findings"] if f["score"] is not None and f["score"] >= 50]
    score = "-" if record["tamper_score"] is None else f"{record['tamper_score']:.1f}"
    return f"{name:<48}  {score:>5}  {record['verdict']:<26}  {', '.join(flagged) or '-'}"


def cmd_analyze(args: argparse.Namespace) -> int:
    methods = _methods(args.methods)
    for folder in (args.maps, args.out):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    inputs = list(expand_inputs(args.paths))
    if not inputs:
        print("forensics: no image found in the given paths", file=sys.stderr)
        return EXIT_UNREADABLE
    unreadable = 0
    if not args.json:
        print(f"{'file':<48}  {'score':>5}  {'verdict':<26}  methods over 50")
    bar = tqdm(inputs, desc="analysing", unit="image", file=sys.stderr, disable=None if len(inputs) > 1 else True)
    for name, path in bar:
        start = time.perf_counter()
        data = None
        try:
            data = path.read_bytes()
            report = analyze(
                data,
                filename=path.name,
                methods=methods,
                max_pixels=args.max_pixels,
                max_bytes=args.max_bytes,
                options=AnalysisOptions(Sensitivity(args.sensitivity)),
            )
            record = {**report.to_dict(), "file": name}
            _write_outputs(report, path.stem, args.maps, args.out)
        except ForensicsError as exc:
            record = _error_record(name, _sha256(data), f"{exc.code}: {exc}", time.perf_counter() - start)
        except OSError as exc:
            record = _error_record(name, _sha256(data), f"UNREADABLE: {exc.strerror or exc}", time.perf_counter() - start)
        unreadable += record.get("error") is not None
        line = json.dumps(record, default=str) if args.json else _table_row(record)
        bar.write(line, file=sys.stdout)
    return EXIT_UNREADABLE if unreadable else EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score each folder with the shipped calibration; with two folders or more, also refit the
    fusion leave-one-dataset-out across them (``fused_lodo``), the figure that counts."""
    from forensics import evaluation, fitting
    from forensics.calibration import load_calibration
    from forensics.dataset import is_generated, read_index

    methods = _methods(args.methods)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    fitted_on = set(load_calibration().get("datasets", {}))
    per_folder: list[tuple[str, list[evaluation.ImageResult]]] = []
    for folder in args.folders:
        samples = [s for s in read_index(folder) if s.label]
        name = Path(folder).resolve().name
        with tqdm(total=len(samples), desc=name, unit="image", file=sys.stderr, disable=None) as bar:
            per_folder.append((name, evaluation.score_samples(samples, name, methods, progress=lambda _s: bar.update())))
    everything = [r for _, results in per_folder for r in results]
    if len(per_folder) >= 2:
        scored = [r for r in everything if r.error is None]
        rows = [fitting.Row.from_result(r.to_dict(), generated=is_generated(r.dataset)) for r in scored]
        lodo, _ = fitting.leave_one_dataset_out(rows, fitting.methods_in(rows), lambda _dataset: args.max_fpr, select=not args.no_selection)
        for r, value in zip(scored, lodo, strict=True):
            r.score["fused_lodo"] = float(value)
    for name, results in per_folder:
        origin = "in-sample: the shipped calibration was fitted on this dataset" if name in fitted_on else "held out from the shipped calibration"
        print(evaluation.report_tables(results, f"{name} (fused: {origin}; fused_lodo: refitted without it)"), end="\n\n")
        evaluation.plot_roc(results, out / f"roc_{name}.png", f"ROC: {name}")
    with (out / "results.jsonl").open("w") as fh:
        for r in everything:
            fh.write(json.dumps(r.to_dict()) + "\n")
    print(f"ROC plots and per-image results written to {out}/")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from api.embedded import HomeInUse, serve

    try:
        serve(host=args.host, port=args.port)
    except HomeInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _methods(spec: str | None) -> list[Method] | None:
    if not spec:
        return None
    return [get_method(name.strip()) for name in spec.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forensics", description="Image forensics: tamper score, findings and heatmaps per photo.")
    sub = parser.add_subparsers(dest="command", required=True)
    methods_help = f"comma-separated subset of methods (default all: {', '.join(REGISTRY)})"

    a = sub.add_parser("analyze", help="analyse image files or folders (recursive)")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--json", action="store_true", help="one JSON object per line for every input")
    a.add_argument("--maps", type=Path, metavar="DIR", help="write DIR/<stem>.png: the fused map, 8-bit gray, input size, 255 = most suspicious")
    a.add_argument("--out", type=Path, metavar="DIR", help="write DIR/<stem>/report.json and heatmap PNGs")
    a.add_argument("--methods", help=methods_help)
    a.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse images with more pixels (default %(default)s)")
    a.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse larger files (default %(default)s)")
    a.add_argument(
        "--sensitivity",
        choices=[s.value for s in Sensitivity],
        default=Sensitivity.DEFAULT.value,
        help="deep scan: fast, default or thorough (more passes, more time; default %(default)s)",
    )
    a.set_defaults(handler=cmd_analyze)

    e = sub.add_parser("evaluate", help="measure the engine on folders with an index.csv (ROC AUC, TPR, FPR, pixel F1)")
    e.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    e.add_argument("--out", type=Path, default=Path("out/evaluation"), help="where ROC plots and results go (default %(default)s)")
    e.add_argument("--methods", help=methods_help)
    e.add_argument("--max-fpr", type=float, default=0.03, help="false-positive rate at 50 allowed per training folder in the refit (default %(default)s)")
    e.add_argument("--no-selection", action="store_true", help="refit with every method instead of choosing them inside each fold (faster)")
    e.set_defaults(handler=cmd_evaluate)

    s = sub.add_parser("serve", help="run the API and a worker with no external server (embedded mode)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(handler=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyError as exc:
        print(f"forensics: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
