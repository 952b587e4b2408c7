"""Time a 24 MP camera raw through intake and the raw_consistency method, then through the whole
analysis (every method, as the CLI runs it; target: <= 3 s).

The DNG is simulated (``tests/raw_support.py``: 6000x4000 RGGB, 14-bit, Poisson-Gaussian noise,
a half-size JPEG preview). Prints the decode time (LibRaw in its child process, the half-size
rendering, the preview), the method's time, the statistics of a genuine and a JPEG-made raw,
and the whole analysis's time in three runs.

    .venv/bin/python bench/bench_raw.py [--width 6000 --height 4000]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.image import load_image  # noqa: E402
from forensics.methods.raw_consistency import RawConsistency  # noqa: E402
from forensics.pipeline import analyze  # noqa: E402
from tests.raw_support import raw_from_jpeg, simulated_sensor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args()
    method = RawConsistency()
    for name, make in (("genuine", simulated_sensor), ("jpeg-made", raw_from_jpeg)):
        data = make(args.height, args.width, seed=0)
        start = time.perf_counter()
        image = load_image(data, filename=f"{name}.dng")
        decoded = time.perf_counter()
        finding = method.run(image)
        done = time.perf_counter()
        print(
            f"{name}: {args.width}x{args.height} ({args.width * args.height / 1e6:.0f} MP, {len(data) / 1e6:.0f} MB) "
            f"decode {decoded - start:.2f} s, raw_consistency {done - decoded:.2f} s, total {done - start:.2f} s; "
            f"statistic {finding.details.get('statistic', float('nan')):.3f}, terms {finding.details.get('terms')}"
        )
    data = simulated_sensor(args.height, args.width, seed=1)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        analyze(data, filename="genuine.dng")
        runs.append(time.perf_counter() - start)
    print("whole analysis, every method:", ", ".join(f"{r:.2f} s" for r in runs))


if __name__ == "__main__":
    main()
