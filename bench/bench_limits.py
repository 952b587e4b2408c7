"""Peak memory of the whole engine, or of a worker, on the largest files the limits accept.

    .venv/bin/python bench/bench_limits.py [--pixels N] [--cases png-zeros jpeg-photo ...] [--worker]

Each case is a file of exactly ``--pixels`` pixels (default: the engine's pixel limit) and
at most the byte limit, written to a temporary folder and analysed by ``forensics analyze
--json`` (every method, as the CLI runs them) in a process of its own; the figure is that
process's peak resident memory (``ru_maxrss`` from ``wait4``, interpreter and libraries
included). Files are made in other processes: Linux counts the resident size of the parent
at ``fork`` in a child's ``ru_maxrss``, so the parent must stay small. The cases are the ones that cost most to decode or analyse: a PNG of zeros (a
100 KB file that decodes to hundreds of MB), random noise (the largest file the byte limit
lets through at that size: RGB where it fits, else gray), a 16-bit PNG, an RGBA PNG, a
camera-like JPEG (its DCT coefficients are kept beside the pixels), JPEG noise with and
without chroma subsampling, a CMYK JPEG and a deflated TIFF; and a file one row of pixels over the limit, which must be refused.

``--worker`` sends the same files, one case each and in that order, to ``forensics serve``
(embedded, on a temporary home, one pool process per core) and prints, after each, the highest peak
resident memory (``VmHWM``, sampled while the case runs) of any process of the worker so far.
"""

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "noso_copymove" / "authentic_jpeg_textures"


def _size(pixels: int) -> tuple[int, int]:
    """Width and height of a 3:2 frame of at most ``pixels`` pixels, as close as whole rows allow."""
    width = int((pixels * 3 / 2) ** 0.5)
    return width, pixels // width


def _photo(width: int, height: int) -> np.ndarray:
    """A real camera photo (scikit-image's astronaut without the data folder), resized."""
    import cv2
    from PIL import Image

    candidates = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if candidates:
        rgb = np.asarray(Image.open(candidates[-1]).convert("RGB"))
    else:
        from skimage import data

        rgb = data.astronaut()
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


def _encode(array: np.ndarray, fmt: str, **options: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


def _noise_png(width: int, height: int, max_bytes: int) -> bytes:
    rng = np.random.default_rng(0)
    channels = 3 if width * height * 3 < max_bytes * 0.99 else 1
    shape = (height, width, 3) if channels == 3 else (height, width)
    return _encode(rng.integers(0, 256, shape, np.uint8), "PNG", compress_level=1)


def _noise_jpeg(width: int, height: int, max_bytes: int, **options: object) -> bytes:
    """Noise at the highest JPEG quality (of 90, 75, 50) that keeps the file under the byte limit."""
    noisy = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    for quality in (90, 75, 50):
        data = _encode(noisy, "JPEG", quality=quality, **options)
        if len(data) <= max_bytes:
            break
    return data


def _cmyk_jpeg(width: int, height: int) -> bytes:
    """A CMYK JPEG (as print workflows write): four full-resolution planes of coefficients."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_photo(width, height)).convert("CMYK").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _gray16(width: int, height: int) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(_photo(width, height), cv2.COLOR_RGB2GRAY)
    return gray.astype(np.uint16) * 257


CASES: dict[str, Callable[[int, int, int], bytes]] = {
    "png-zeros": lambda w, h, _b: _encode(np.zeros((h, w, 3), np.uint8), "PNG"),
    "png-noise": _noise_png,
    "png-16bit": lambda w, h, _b: _encode(_gray16(w, h), "PNG"),
    "png-rgba": lambda w, h, _b: _encode(np.dstack([_photo(w, h), np.full((h, w), 200, np.uint8)]), "PNG", compress_level=1),
    "jpeg-photo": lambda w, h, _b: _encode(_photo(w, h), "JPEG", quality=92),
    "jpeg-noise": _noise_jpeg,
    # no chroma subsampling: the colour planes' coefficients are as large as the luma's
    "jpeg-444": lambda w, h, b: _noise_jpeg(w, h, b, subsampling=0),
    "jpeg-cmyk": lambda w, h, _b: _cmyk_jpeg(w, h),
    "tiff-photo": lambda w, h, _b: _encode(_photo(w, h), "TIFF", compression="tiff_adobe_deflate"),
    # one row more than the limit allows: refused before decoding
    "over-limit": lambda w, h, _b: _encode(np.zeros((h + 1, w, 3), np.uint8), "PNG"),
}


def analyse(path: Path, max_pixels: int) -> dict:
    """Run ``forensics analyze --json`` on ``path``; its verdict or error, seconds and peak memory."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "forensics.cli", "analyze", "--json", "--max-pixels", str(max_pixels), str(path)],
            cwd=REPO, stdout=out, stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        record = json.loads(out.read().decode().strip().splitlines()[-1])
    return {
        "seconds": time.perf_counter() - start,
        "peak_mb": usage.ru_maxrss / 1024,
        "error": record.get("error"),
        "score": record.get("tamper_score"),
    }


class EmbeddedService:
    """``forensics serve`` on a temporary home and a free port, with ``max_pixels`` as its limit."""

    KEY = "fsk_bench_limits_0123456789abcdef0123"

    def __init__(self, home: Path, max_pixels: int) -> None:
        sys.path.insert(0, str(REPO))
        from tests.platform_support import free_port, poll

        self.base = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORENSICS_", "DATABASE_URL", "BROKER_URL", "STORAGE_URL", "S3_"))}
        env.update(FORENSICS_HOME=str(home), FORENSICS_API_KEY=self.KEY, FORENSICS_MAX_PIXELS=str(max_pixels))
        with (home.parent / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "forensics.cli", "serve", "--port", self.base.rsplit(":", 1)[1]],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.peaks: dict[int, int] = {}
        poll(self._health, bool, 90, "a healthy embedded service")

    def _health(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            time.sleep(0.5)
            return False

    def _sample(self) -> None:
        from tests.platform_support import descendants

        for pid in descendants(self.process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(line.split()[1]) // 1024)

    def analyse(self, path: Path) -> dict:
        """One case of ``path``; its image's status, seconds, and the worker's highest peak so far."""
        import httpx

        from tests.platform_support import poll

        auth = {"Authorization": f"Bearer {self.KEY}"}
        start = time.perf_counter()
        created = httpx.post(f"{self.base}/v1/cases", headers=auth, files=[("images", (path.name, path.read_bytes()))], timeout=120)
        created.raise_for_status()

        def case() -> dict:
            self._sample()
            return httpx.get(created.headers["location"], headers=auth, timeout=10).json()

        done = poll(case, lambda c: c["status"] in ("completed", "failed"), 600, f"{path.name} analysed")
        self._sample()
        image = done["images"][0]
        return {
            "seconds": time.perf_counter() - start,
            "peak_mb": max(self.peaks.values()),
            "error": image.get("error") and f"{image['error']['code']}: {image['error']['detail']}",
            "score": image.get("tamper_score"),
        }

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def make(name: str, pixels: int, path: Path) -> None:
    from forensics.image import DEFAULT_MAX_BYTES

    path.write_bytes(CASES[name](*_size(pixels), DEFAULT_MAX_BYTES))


def main() -> int:
    from forensics.image import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", type=int, default=DEFAULT_MAX_PIXELS, help="pixels of each file and the limit (default %(default)s)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--worker", action="store_true", help="through forensics serve: the worker's peak, not the engine's")
    parser.add_argument("--make", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make(args.make[0], args.pixels, Path(args.make[1]))
        return 0
    width, height = _size(args.pixels)
    print(f"pixel limit {args.pixels:,}; files of {width}x{height} = {width * height:,} pixels; byte limit {DEFAULT_MAX_BYTES:,}")
    print(f"{'case':<12} {'file MB':>8} {'seconds':>8} {'peak MB':>8}  result")
    with tempfile.TemporaryDirectory() as folder:
        service = EmbeddedService(Path(folder) / "home", args.pixels) if args.worker else None
        try:
            for name in args.cases:
                path = Path(folder) / f"{name}.{name.split('-')[0].replace('jpeg', 'jpg').replace('over', 'png')}"
                subprocess.run([sys.executable, __file__, "--pixels", str(args.pixels), "--make", name, str(path)], check=True)
                result = service.analyse(path) if service else analyse(path, args.pixels)
                size = path.stat().st_size
                path.unlink()
                outcome = result["error"] or f"analysed, score {result['score']}"
                print(f"{name:<12} {size / 1e6:>8.2f} {result['seconds']:>8.1f} {result['peak_mb']:>8.0f}  {outcome}", flush=True)
        finally:
            if service:
                service.stop()
    if args.worker:
        print("peak MB: the highest peak resident memory of any worker process so far (VmHWM, sampled), its mapped decodes included")
    else:
        print("peak MB: resident memory of the analysing process at its highest, interpreter included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
