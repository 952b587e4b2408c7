"""``python -m training <model>``: train one model from scratch and export it (see :mod:`training`)."""

import argparse
import importlib
import sys
from pathlib import Path

from forensics.learn.runtime import MODELS_DIR
from training.common import DEFAULT_DATA, DEFAULT_WORK, RunSettings

#: Model name -> module of this package that trains it.
MODELS = {
    "deep_scan": "training.deep_scan",
    "ai_pixels": "training.ai_pixels",
    "recapture": "training.recapture",
    "quality": "training.quality",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument(
        "--size", choices=("default", "tiny"), default="default", help="default: the shipped model; tiny: seconds, for the smoke test"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="reference data (default ../shared/data)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of generated training data (default out/train)")
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="DATASET", help="leave this source dataset out (fold models; repeatable)"
    )
    parser.add_argument("--models", type=Path, default=MODELS_DIR, help="where the ONNX file and its card go (default forensics/models)")
    args = parser.parse_args(argv)
    if not (args.data / "README.md").exists():
        parser.error(f"no reference data at {args.data}")
    module = importlib.import_module(MODELS[args.model])
    path = module.train(RunSettings(args.data, args.work, args.models, args.seed, args.size, tuple(args.exclude)))
    print(f"wrote {path} and its card {path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
