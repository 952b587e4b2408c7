"""Generate the synthetic manipulation datasets from the genuine photos of ../shared/data.

Usage (from the repository root):

    .venv/bin/python scripts/synthesize.py                      # out/synth/synth_local, out/synth/synth_resave
    .venv/bin/python scripts/synthesize.py --seed 1 --per-source 5 --out /tmp/synth
    .venv/bin/python scripts/synthesize.py --rebuild-photoshop-tables   # rewrite forensics/synth/photoshop_tables.json

The output is identical for identical arguments (every draw is seeded per original); see
``forensics/synth/build.py`` for the layout and ``forensics/synth/__init__.py`` for the sources
of the method.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forensics.synth import PHOTOSHOP_TABLES_PATH, Settings, synthesize, write_photoshop_tables  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="reference data folder (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("out/synth"), help="output folder (default out/synth)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--per-source", type=int, default=25, help="at most N originals per source dataset (default 25)")
    parser.add_argument("--max-side", type=int, default=1536, help="crop (never resize) originals to at most this side (default 1536)")
    parser.add_argument("--edits-per-original", type=int, default=2, help="local edits per original (default 2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPU count)")
    parser.add_argument(
        "--rebuild-photoshop-tables", action="store_true", help=f"rewrite {PHOTOSHOP_TABLES_PATH.name} from --data and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rebuild_photoshop_tables:
        table_set = write_photoshop_tables(args.data)
        for entry in table_set["tables"]:
            print(
                f"{entry['id']}  {entry['subsampling']}  ~IJG q{entry['ijg_quality_estimate']}  {len(entry['files'])} file(s), e.g. {entry['files'][0]}"
            )
        print(f"wrote {PHOTOSHOP_TABLES_PATH}")
        return 0
    started = time.perf_counter()
    settings = Settings(args.data, args.out, args.seed, args.per_source, args.max_side, args.edits_per_original)
    summary = synthesize(settings, workers=args.workers)
    elapsed = time.perf_counter() - started
    print(f"{summary['originals']} originals: " + ", ".join(f"{k} {v}" for k, v in summary["originals_per_dataset"].items()))
    for folder, counts in summary["counts"].items():
        total = sum(n for kinds in counts.values() for n in kinds.values())
        print(f"{args.out / folder}: {total} images")
        for label, kinds in counts.items():
            print(f"  {label:10s} " + ", ".join(f"{kind} {n}" for kind, n in kinds.items()))
    print(f"skipped: {len(summary['skipped'])} (reasons in manifest.json)")
    print(f"seed {args.seed}, {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
