"""Engine benchmark: per-method and total seconds, and peak memory, on 1, 12 and 24 MP JPEGs.

    .venv/bin/python bench/bench_engine.py [--sizes 1 12 24] [--repeat 3] [--sensitivity thorough] [--skip METHOD ...]

Each size runs in a fresh process so that its peak resident memory (ru_maxrss, which
includes the interpreter and libraries, ~150 MB) is its own. The test photo is a real
camera JPEG from ../shared/data resized to the target size (scikit-image's astronaut when
the data folder is absent), re-encoded at quality 92 the way a camera would. Figures are the
median of ``--repeat`` runs after one warm-up; "decode" is the shared intake (format sniff,
container walk, pixel decode and DCT coefficients), "total" is the wall time of
``forensics.analyze`` including decode and fusion, with methods in parallel threads.
"""

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "noso_copymove" / "authentic_jpeg_textures"


def test_jpeg(megapixels: float) -> bytes:
    import cv2
    import numpy as np
    from PIL import Image

    candidates = sorted(SOURCE.glob("*.jpg")) if SOURCE.is_dir() else []
    if candidates:
        rgb = np.asarray(Image.open(candidates[-1]).convert("RGB"))
    else:
        from skimage import data

        rgb = data.astronaut()
    width = int(round((megapixels * 1e6 * 3 / 2) ** 0.5))
    height = int(round(width * 2 / 3))
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(resized).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def measure(megapixels: float, repeat: int, sensitivity: str, skip: list[str]) -> dict:
    from forensics import analyze, load_image
    from forensics.methods import REGISTRY
    from forensics.options import AnalysisOptions, Sensitivity

    options = AnalysisOptions(Sensitivity(sensitivity))
    methods = [m for name, m in REGISTRY.items() if name not in skip]
    data = test_jpeg(megapixels)
    analyze(data, filename="warmup.jpg", methods=methods, options=options)
    totals, decodes, per_method = [], [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        load_image(data)
        decodes.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = analyze(data, filename="bench.jpg", methods=methods, options=options)
        totals.append(time.perf_counter() - start)
        for f in report.findings:
            per_method.setdefault(f.method, []).append(f.seconds)
    return {
        "megapixels": round(report.image.megapixels, 1),
        "size": f"{report.image.width}x{report.image.height}",
        "bytes": len(data),
        "decode_s": statistics.median(decodes),
        "total_s": statistics.median(totals),
        "methods_s": {k: statistics.median(v) for k, v in per_method.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 24], help="megapixels (default 1 12 24)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sensitivity", choices=("fast", "default", "thorough"), default="default", help="the deep scan's (default %(default)s)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="METHOD", help="run without these methods (what they add to the total)")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.repeat, args.sensitivity, args.skip)))
        return 0
    rows = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--repeat", str(args.repeat), "--sensitivity", args.sensitivity]
        command += ["--skip", *args.skip] if args.skip else []
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    methods = list(rows[0]["methods_s"])
    header = f"{'image':<16} {'decode':>7} " + " ".join(f"{m[:10]:>10}" for m in methods) + f" {'TOTAL':>7} {'peak MB':>8}"
    print(header)
    for r in rows:
        cells = " ".join(f"{r['methods_s'][m]:>10.3f}" for m in methods)
        print(f"{r['megapixels']:>5} MP {r['size']:<9} {r['decode_s']:>6.3f} {cells} {r['total_s']:>7.3f} {r['peak_rss_mb']:>8.0f}")
    print(f"seconds per image (median), deep scan sensitivity {args.sensitivity}; method columns are each method's own time inside the parallel run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
