"""PDF report benchmark: seconds and peak memory to write a case's PDF (target: 100 images in 30 s or less).

    .venv/bin/python bench/bench_pdf.py [--images 100] [--side 2048]

The case is built in memory (ORM objects, no database) with the report content of a real
analysis: eleven findings per image (two with a learned model), metadata with EXIF text, the
fused contributions, and an overlay JPEG stored at the display size (2048 px long side, as the
worker stores it) in a temporary LocalStorage. Each overlay is a distinct file (the PDF would
store identical pictures once) of a noisy photo-like picture, about 1 MB, as large as a photo's. Peak memory is the process's resident
peak (ru_maxrss, including the interpreter, libraries and the case itself), and with ``--heap``
the Python heap's peak during a second run under tracemalloc.
"""

import argparse
import io
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ["metadata", "integrity", "jpeg", "ela", "noise", "copymove", "resave", "encoder", "deep_scan", "ai_generated", "quality"]


def base_picture(seed: int, side: int) -> "np.ndarray":
    """A photo-like RGB picture (smooth gradients plus noise) of ``side`` x 3/4 ``side`` pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    height = side * 3 // 4
    y, x = np.mgrid[0:height, 0:side].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (90 + seed * 7)), 128 + 100 * np.cos(y / 70), 128 + 60 * np.sin((x + y) / 150)], axis=-1)
    return np.clip(base + rng.normal(0, 18, base.shape).astype(np.float32), 0, 255).astype(np.uint8)


def overlay_jpeg(base: "np.ndarray", n: int) -> bytes:
    """``base`` with a patch of its own, as a quality-92 JPEG: a distinct file per image (the PDF stores identical pictures once)."""
    from PIL import Image as PILImage

    pixels = base.copy()
    pixels[16 : 16 + 64, 16 + n * 8 : 80 + n * 8] = (n * 37 % 256, 255 - n % 256, 0)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


def build_case(count: int, storage: object, side: int) -> object:
    """A completed case of ``count`` images with findings and stored overlays (no database)."""
    from service.models import Case, FindingRow, Image

    now = datetime.now(UTC)
    case = Case(id=uuid.uuid4(), label="Bench case", sensitivity="default", status="completed", created_at=now, completed_at=now)
    bases = [base_picture(seed, side) for seed in range(4)]
    for n in range(count):
        image = Image(
            id=uuid.uuid4(),
            case_id=case.id,
            position=n,
            filename=f"photo_{n:03d}.jpg",
            status="completed",
            sha256=f"{n:064x}",
            format="jpeg",
            width=side * 2,
            height=side * 3 // 2,
            file_info={"format": "jpeg", "width": side * 2, "height": side * 3 // 2, "bytes": 4_500_000, "md5": f"{n:032x}"},
            image_metadata={
                "make": "Canon",
                "model": "EOS 5D Mark IV",
                "dates": {"date_time_original": "2026:11:02 10:11:12", "modify_date": "2026:11:03 08:00:00"},
                "software": [{"value": "Adobe Photoshop 25.0 (Windows)", "editor": "Adobe Photoshop"}],
                "gps": {"latitude": 48.8584, "longitude": 2.2945, "altitude_m": 35.0, "flags": []},
                "hashes": {"md5": f"{n:032x}", "phash": "c3c3c3c33c3c3c3c"},
            },
            tamper_score=float((n * 37) % 100),
            verdict="likely_manipulated" if (n * 37) % 100 >= 50 else "no_manipulation_detected",
            fused={
                "confidence": "medium",
                "summary": "Two methods found traces of local editing in the upper left of the picture.",
                "issues": ["Edited with Adobe Photoshop", "Error level differs in one region"],
                "positives": ["Camera metadata is consistent"],
                "recommendation": "Ask the source for the original file.",
                "bias": -2.1,
                "contributions": {m: round(0.3 * (i - 4), 2) for i, m in enumerate(METHODS[:8])},
            },
            overlay_key=f"cases/{case.id}/images/{n}/overlay.jpg",
            created_at=now,
            completed_at=now,
        )
        storage.put_bytes(image.overlay_key, overlay_jpeg(bases[n % len(bases)], n), "image/jpeg")
        for position, method in enumerate(METHODS):
            details: dict[str, object] = {"mean": 0.12, "blocks": [1, 2, 3]}
            if method in ("deep_scan", "ai_generated"):
                details["model"] = {"name": method, "version": "1.2", "sha256": "0123456789abcdef"}
            image.findings.append(
                FindingRow(
                    method=method,
                    position=position,
                    status="ok",
                    method_version="1.0",
                    score=float((n + position * 11) % 100),
                    label="Traces of local editing" if position % 3 == 0 else "Nothing unusual",
                    summary="The measurement is within what cameras produce for this quality and size.",
                    details=details,
                )
            )
        case.images.append(image)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--side", type=int, default=2048, help="long side of the stored overlays, px")
    parser.add_argument("--heap", action="store_true", help="also measure the Python heap's peak (tracemalloc, a second, slower run)")
    args = parser.parse_args()

    from service.pdf_report import write_case_pdf
    from service.storage import LocalStorage

    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder) / "storage")
        case = build_case(args.images, storage, args.side)
        write_case_pdf(build_case(1, storage, args.side), storage, io.BytesIO())  # warm-up: imports, fonts
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        with open(Path(folder) / "case.pdf", "wb") as out:
            write_case_pdf(case, storage, out)
        seconds = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = (Path(folder) / "case.pdf").stat().st_size
        heap_peak = 0
        if args.heap:  # a second run under tracemalloc, which slows Python several times over
            tracemalloc.start()
            write_case_pdf(case, storage, io.BytesIO())
            heap_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(f"{args.images} images, overlays {args.side} px: {seconds:.1f} s, PDF {size / 1e6:.1f} MB")
    print(
        f"resident peak {rss:.0f} MB (before the PDF {rss_before:.0f} MB)"
        + (f"; Python heap peak {heap_peak / 1e6:.0f} MB" if heap_peak else "")
    )


if __name__ == "__main__":
    main()
