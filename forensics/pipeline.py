"""load -> methods (in parallel threads) -> fusion: the whole analysis of one image."""

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import cv2
from threadpoolctl import threadpool_limits

from forensics.finding import Finding
from forensics.fusion import Fused, fuse
from forensics.image import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, PARALLEL_MAX_PIXELS, DecodedImage, load_image
from forensics.methods import REGISTRY
from forensics.methods.base import Method
from forensics.options import DEFAULT_OPTIONS, AnalysisOptions

DEFAULT_METHOD_TIMEOUT = 120.0


def file_info(image: DecodedImage) -> dict[str, Any]:
    """What the file is: name, hashes, size, real format, dimensions."""
    return {
        "filename": image.filename,
        "sha256": image.sha256,
        "md5": image.md5,
        "bytes": len(image.data),
        "format": image.format.value,
        "mime_type": image.format.mime_type,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "frames": image.frames,
    }


@dataclass(frozen=True, eq=False)
class Report:
    image: DecodedImage
    findings: tuple[Finding, ...]
    fused: Fused
    seconds: float
    options: AnalysisOptions = DEFAULT_OPTIONS

    def file_info(self) -> dict[str, Any]:
        return file_info(self.image)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``forensic_report.json``)."""
        return {
            "file": self.image.filename,
            "sha256": self.image.sha256,
            **self.fused.to_dict(),
            "image": self.file_info(),
            "findings": [f.to_dict() for f in self.findings],
            "options": self.options.to_dict(),
            "seconds": round(self.seconds, 3),
        }


@contextmanager
def _one_library_thread() -> Iterator[None]:
    """BLAS and OpenCV run single-threaded inside the block (process-wide, restored after).

    Methods running side by side already hold every core; the libraries' own threads would
    spin for cores the other methods hold. 24 MP on 2 cores: 2.0 s with BLAS's threads,
    1.5-1.6 s without. OpenCV at one thread too (as the worker's processes run it,
    ``worker/celery_app.py``): 3-4 % less again at 12 and 24 MP, 2 % more at 1 MP, where
    ``copymove`` alone is most of the time (medians of ten paired runs).
    """
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(opencv_threads)


def run_methods(
    image: DecodedImage,
    methods: Sequence[Method] | None = None,
    *,
    timeout: float = DEFAULT_METHOD_TIMEOUT,
    workers: int | None = None,
    options: AnalysisOptions = DEFAULT_OPTIONS,
) -> tuple[Finding, ...]:
    """Run ``methods`` (default: all registered) on ``image`` in parallel threads, one per
    core; one at a time for an image over :data:`~forensics.image.PARALLEL_MAX_PIXELS`, since
    the largest methods (enhancement, noise) each work in about 10 bytes a pixel beside the
    decoded image's 7 to 13, and side by side they would pass 1.5 GB at the pixel limit.

    While methods run side by side, BLAS and OpenCV get one thread each (:func:`_one_library_thread`).
    The costliest methods (``Method.cost_seconds``) start first, so that the short ones fill
    the cores at the end instead of a long one starting last (longest-processing-time-first
    scheduling, Graham, SIAM J. Appl. Math. 1969); findings keep the order of ``methods``.

    A method still running after ``timeout`` seconds gets an error Finding; its thread is
    abandoned (Python cannot kill it), which is why the worker also sets hard time limits.
    """
    chosen = list(REGISTRY.values()) if methods is None else list(methods)
    if workers is None:
        workers = min(len(chosen), os.cpu_count() or 1) if image.width * image.height <= PARALLEL_MAX_PIXELS else 1
    pool = ThreadPoolExecutor(max_workers=workers or 1)
    try:
        with _one_library_thread() if workers > 1 else nullcontext():
            costliest_first = sorted(range(len(chosen)), key=lambda i: -chosen[i].cost_seconds)
            futures = {i: pool.submit(chosen[i].run, image, options) for i in costliest_first}
            wait(futures.values(), timeout=timeout)
        findings = []
        for i, method in enumerate(chosen):
            future = futures[i]
            if future.done():
                findings.append(future.result())
            else:
                future.cancel()
                findings.append(method.error(f"The method did not finish within {timeout:.0f} s."))
        return tuple(findings)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def analyze_image(
    image: DecodedImage,
    methods: Sequence[Method] | None = None,
    *,
    timeout: float = DEFAULT_METHOD_TIMEOUT,
    options: AnalysisOptions = DEFAULT_OPTIONS,
) -> Report:
    start = time.perf_counter()
    findings = run_methods(image, methods, timeout=timeout, options=options)
    fused = fuse(findings, (image.height, image.width))
    return Report(image=image, findings=findings, fused=fused, seconds=time.perf_counter() - start, options=options)


def analyze(
    data: bytes,
    *,
    filename: str | None = None,
    methods: Sequence[Method] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_METHOD_TIMEOUT,
    options: AnalysisOptions = DEFAULT_OPTIONS,
) -> Report:
    """Analyse one file's bytes; raises :class:`forensics.ForensicsError` when it cannot be read."""
    start = time.perf_counter()
    image = load_image(data, filename=filename, max_pixels=max_pixels, max_bytes=max_bytes)
    report = analyze_image(image, methods, timeout=timeout, options=options)
    return Report(image=image, findings=report.findings, fused=report.fused, seconds=time.perf_counter() - start, options=options)
