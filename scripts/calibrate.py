"""Fit the score calibration and fusion from labelled data, and report leave-one-dataset-out figures.

Usage (from the repository root, with the virtual environment set up by scripts/test):

    .venv/bin/python scripts/synthesize.py                 # the generated manipulations (out/synth)
    .venv/bin/python scripts/calibrate.py                  # run the engine, fit, write calibration
    .venv/bin/python scripts/calibrate.py --reuse          # refit from the cached engine results
    .venv/bin/python scripts/calibrate.py --reuse --rerun cvip_copymove   # rerun the engine on some folders only
    .venv/bin/python scripts/calibrate.py --check          # report only, write nothing

The headline figures are leave-one-dataset-out (``forensics/fitting.py``): every fitted
quantity (method lines, evidence floors, method selection, fusion weights, bias, and the camera
table collection of ``encoder``) is refitted without the dataset it is scored on and without
every generated image made from that dataset's photos. Within-dataset cross-validation (folds
grouped by original, contributor or subject) and in-sample figures are printed beside them,
labelled as such. Figures on generated data are printed apart from those on benchmark data.

"edited" labels of the metadata folders are derived from Software tags, not ground truth, so
those images are left out; their authentic camera originals are kept as negatives. Recaptured
and AI-generated images are not what these methods detect (see the learned detectors) and are
left out of the fit; their folders' genuine photos are kept as negatives.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forensics import evaluation, fitting  # noqa: E402
from forensics.calibration import CALIBRATION_FILE  # noqa: E402
from forensics.dataset import is_generated, read_index  # noqa: E402
from forensics.learn.runtime import card_path  # noqa: E402
from forensics.methods.deep_scan import FOLDS_ENV, fold_name  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SYNTH = REPO / "out" / "synth"
CACHE = REPO / "out" / "calibration"
#: Fold models of the deep scan: ``<FOLDS>/<dataset>/deep_scan.onnx``, trained without that dataset
#: (``<a>+<b>`` without two). Committed, so that every machine scores the held-out folds with the
#: same networks (retrained ones differ with the CPU's floating point, and so do the figures).
FOLDS = REPO / "training" / "folds" / "deep_scan"
#: (folder, labels used): metadata and recapture folders contribute only their genuine photos.
SETS: tuple[tuple[str, frozenset[str]], ...] = (
    ("casia2_samples", frozenset({"authentic", "tampered"})),
    ("comofod_subset", frozenset({"authentic", "tampered"})),
    ("noso_copymove", frozenset({"authentic", "tampered"})),
    ("cvip_copymove", frozenset({"authentic", "tampered"})),
    ("mapo80_exif_spoof", frozenset({"authentic", "edited"})),
    ("exif_samples_ianare", frozenset({"authentic"})),
    ("exiftool_test_images", frozenset({"authentic"})),
    ("dresden_natural", frozenset({"authentic"})),
    ("recapture_phone", frozenset({"authentic"})),
)
#: Generated sets (scripts/synthesize.py): local edits against the same photos re-saved alike,
#: and whole-image re-saves against the untouched originals.
SYNTH_SETS: tuple[tuple[str, frozenset[str]], ...] = (
    ("synth_local", frozenset({"authentic", "tampered"})),
    ("synth_resave", frozenset({"authentic", "edited"})),
)
#: Camera and phone originals: the false-alarm target there is stricter (3 %).
CAMERA_SETS = frozenset({"exif_samples_ianare", "exiftool_test_images", "dresden_natural", "recapture_phone"})


def folder_of(name: str) -> Path:
    return SYNTH / name if is_generated(name) else DATA / name


def _score_folder(name: str, labels: frozenset[str]) -> list[dict]:
    from tqdm import tqdm

    samples = [s for s in read_index(folder_of(name)) if s.label in labels]
    with tqdm(total=len(samples), desc=name, unit="image", file=sys.stderr, position=None) as bar:
        results = evaluation.score_samples(samples, name, progress=lambda _s: bar.update())
    return [r.to_dict() for r in results]


def deep_scan_folds() -> None:
    """Train the deep scan's fold models that are missing or stale, and point the method at them.

    The shipped model saw crops of the photos of its card's ``data_sources``; a held-out fold
    of one of those datasets is scored with the model trained without it
    (``DeepScan.statistic_excluding``). A fold model of another version than the shipped one
    (``forensics.methods.deep_scan.VERSION``, raised whenever the recipe changes) is trained again,
    into the committed folder: commit the new ones with the shipped model they go with.
    """
    shipped = json.loads(card_path("deep_scan").read_text())
    sources = shipped.get("data_sources", [])
    # one dataset held out, and two: the method selection inside a held-out fold holds out one more
    for excluded in [*itertools.combinations(sources, 1), *itertools.combinations(sources, 2)]:
        fold = FOLDS / fold_name(set(excluded))
        card = card_path("deep_scan", fold)
        if card.exists() and json.loads(card.read_text()).get("version") == shipped["version"]:
            continue
        print(f"training the deep scan fold model without {', '.join(excluded)}", file=sys.stderr)
        command = [sys.executable, "-m", "training", "deep_scan", *(a for d in excluded for a in ("--exclude", d)), "--models", str(fold)]
        subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    os.environ[FOLDS_ENV] = str(FOLDS)


def engine_results(rerun: Sequence[str] | None, reuse: bool) -> list[dict]:
    """Engine results of every folder, cached per folder in out/calibration/<folder>.jsonl.

    By default the engine runs on every folder; with ``reuse`` only the ``rerun`` folders do
    and the others come from the cache (a folder never run is left out, with a note).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    sets = [s for s in SETS + SYNTH_SETS if folder_of(s[0]).exists()]
    todo = [s for s in sets if not reuse or s[0] in (rerun or ())]
    if todo:
        deep_scan_folds()
        workers = max(1, min(len(todo), os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for (name, _), rows in zip(todo, pool.map(_score_folder, *zip(*todo)), strict=True):
                (CACHE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows: list[dict] = []
    for name, _ in sets:
        cached = CACHE / f"{name}.jsonl"
        if cached.exists():
            rows.extend(json.loads(line) for line in cached.read_text().splitlines())
        else:
            print(f"note: {name} has no cached results; run without --reuse or with --rerun {name}", file=sys.stderr)
    return rows


def _rate(values: np.ndarray) -> str:
    """Share at 50 or more, its count and its Wilson interval."""
    return evaluation.format_rate(int(np.sum(values >= 50)), values.size)


def report(rows: Sequence[fitting.Row], columns: dict[str, np.ndarray], names: Sequence[str]) -> str:
    """One line per dataset: best single method, fused AUC (held out, with its interval; grouped CV;
    in-sample), rates at 50 held out; under each generated set, its held-out AUC per origin folder and kind of edit.

    AUCs pair images of the same origin only (``fitting.dataset_aucs``): a generated set's
    held-out scores come from one model per origin dataset. Intervals: INTERVAL_LEVEL, the AUC's
    by a bootstrap that draws whole originals, contributors or subjects, the rates' by Wilson.
    """
    aucs = {key: fitting.dataset_aucs(rows, values) for key, values in columns.items()}
    intervals = fitting.dataset_auc_intervals(rows, columns["lodo"])
    single: dict[str, dict[str, float]] = {}
    for n in names:
        scored = [r for r in rows if n in r.statistic]
        for dataset, auc in fitting.dataset_aucs(scored, np.array([r.statistic[n] for r in scored])).items():
            if sum(r.dataset == dataset for r in scored) >= 0.5 * sum(r.dataset == dataset for r in rows):
                single.setdefault(dataset, {})[n] = auc
    lines = [
        f"{'dataset':<26} {'pos':>4} {'neg':>4} {'best method (AUC)':<24} {'LODO AUC [interval]':<21} {'groupCV':>7} {'in-smpl':>7} "
        f"{'FPR@50 (n) [interval]':<26} {'TPR@50 (n) [interval]':<26}   (rates leave-one-dataset-out; "
        f"{evaluation.INTERVAL_LEVEL:.0%} intervals)"
    ]
    for generated in (False, True):
        lines.append("-- generated manipulations --" if generated else "-- benchmark data --")
        for name in dict.fromkeys(r.dataset for r in rows if is_generated(r.dataset) == generated):
            pos = [i for i, r in enumerate(rows) if r.dataset == name and r.positive]
            neg = [i for i, r in enumerate(rows) if r.dataset == name and not r.positive]
            best = max(single.get(name, {}).items(), key=lambda kv: kv[1], default=None)
            cells = [f"{aucs[key][name]:.3f}" if name in aucs[key] else "-" for key in ("lodo", "cv", "in_sample")]
            held_out = f"{cells[0]} {evaluation.format_interval(intervals.get(name))}"
            lines.append(
                f"{name:<26} {len(pos):>4} {len(neg):>4} {f'{best[0]} {best[1]:.3f}' if best else '':<24} "
                f"{held_out:<21} {cells[1]:>7} {cells[2]:>7} {_rate(columns['lodo'][neg]):<26} {_rate(columns['lodo'][pos]):<26}"
            )
            if generated:  # where it is weak: per origin folder (a camera's own files, photos software saved before) and kind of edit
                lines += [
                    f"  {p.label:<24} {p.positives:>4} {p.negatives:>4} {'':<24} {p.auc:.3f} {evaluation.format_interval(p.interval)}"
                    for p in fitting.breakdown(rows, columns["lodo"], name)
                ]
    lines.append(evaluation.INTERVAL_NOTE)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help=f"refit from the cached results in {CACHE.relative_to(REPO)}/")
    parser.add_argument("--rerun", nargs="+", metavar="FOLDER", help="with --reuse: run the engine again on these folders")
    parser.add_argument("--check", action="store_true", help="report the figures; do not write the calibration")
    parser.add_argument(
        "--max-fpr", type=float, default=0.05, help="authentic false-positive rate allowed at 50 in each training dataset (default %(default)s)"
    )
    parser.add_argument(
        "--max-fpr-camera", type=float, default=0.03, help="the same for camera and phone originals (default %(default)s)"
    )
    args = parser.parse_args()
    raw = [r for r in engine_results(args.rerun, args.reuse) if r["error"] is None]
    rows = [fitting.Row.from_result(r, generated=is_generated(r["dataset"])) for r in raw]
    names = fitting.methods_in(rows)
    max_fpr = lambda dataset: args.max_fpr_camera if dataset in CAMERA_SETS else args.max_fpr  # noqa: E731

    print(f"# {len(rows)} images; methods: {', '.join(names)}", file=sys.stderr)
    chosen = fitting.select_methods(rows, names, max_fpr)
    model = fitting.fit_model(rows, chosen, max_fpr)
    # every method keeps its own calibrated line for its reported score, weighted or not
    logistics, _ = fitting.fit_method_scales(rows, names, frozenset())
    lodo, kept = fitting.leave_one_dataset_out(rows, names, max_fpr, progress=lambda k: print(f"  held out {k}", file=sys.stderr))
    columns = {
        "lodo": lodo,
        "cv": fitting.grouped_cross_validation(rows, chosen, max_fpr),
        "in_sample": model.scores(rows),
    }

    print("# Per-method calibration (fitted on everything; the held-out folds refit all of it)")
    for n in names:
        logistic = logistics[n]
        weighting = f"floor={model.floors[n]:5.2f} weight={model.weights[n]:.3f}" if n in chosen else "weight=0 (helps no held-out dataset)"
        print(f"{n:<14} center={logistic.center:<12.6g} scale={logistic.scale:<12.6g} {weighting}  ({logistic.source})")
    print(f"fusion bias={model.bias:.4f}")
    print("methods kept by each held-out fold: " + "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in kept.items()) + "\n")
    print(report(rows, columns, names))
    auth = [i for i, r in enumerate(rows) if r.label == "authentic" and not is_generated(r.dataset)]
    camera = [i for i in auth if rows[i].dataset in CAMERA_SETS]
    print(
        f"\nbenchmark authentic images at 50 or more, leave-one-dataset-out: {_rate(lodo[auth])}; "
        f"camera and phone originals {_rate(lodo[camera])}"
    )

    if not args.check:
        calibration = {
            "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python scripts/calibrate.py" + (" --reuse" if args.reuse else ""),
            "datasets": {folder: sorted(labels) for folder, labels in SETS + SYNTH_SETS if folder_of(folder).exists()},
            "images": len(rows),
            "methods": {n: {**logistics[n].to_dict(), "source": logistics[n].source} for n in names},
            "fusion": model.fusion_params(),
        }
        CALIBRATION_FILE.write_text(json.dumps(calibration, indent=2) + "\n")
        print(f"wrote {CALIBRATION_FILE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
