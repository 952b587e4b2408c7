"""The pipeline isolates failing and hanging methods, and fusion is explainable."""

import threading
import time
from dataclasses import replace
from typing import ClassVar

import cv2
import numpy as np
import pytest

from forensics import Finding, Status, analyze, load_image
from forensics.calibration import Logistic
from forensics.fusion import Verdict, fuse, fused_logit
from forensics.image import PARALLEL_MAX_PIXELS, DecodedImage
from forensics.methods.base import Method
from forensics.pipeline import run_methods

from .conftest import jpeg_bytes, png_bytes


class Constant(Method):
    name = "constant"
    version = "1"
    default_logistic: ClassVar[Logistic] = Logistic(center=0.0, scale=1.0)

    def __init__(self, statistic: float) -> None:
        self.statistic = statistic

    def examine(self, image: DecodedImage) -> Finding:
        heat = np.zeros((8, 8), np.float32)
        heat[:4, :4] = 1.0
        return self.ok(self.statistic, "constant", "A constant statistic.", {}, heatmap=heat)


class Broken(Method):
    name = "broken"
    version = "1"

    def examine(self, image: DecodedImage) -> Finding:
        raise RuntimeError("boom")


class Sleepy(Method):
    name = "sleepy"
    version = "1"

    def __init__(self) -> None:
        self.release = threading.Event()

    def examine(self, image: DecodedImage) -> Finding:
        self.release.wait(10)
        return self.not_applicable("woke up")


@pytest.fixture()
def image(astronaut) -> DecodedImage:
    return load_image(jpeg_bytes(astronaut), filename="a.jpg")


def test_a_failing_method_yields_an_error_finding_and_others_go_on(image: DecodedImage) -> None:
    findings = run_methods(image, [Broken(), Constant(2.0)])
    assert findings[0].status is Status.ERROR
    assert "RuntimeError: boom" in findings[0].summary
    assert findings[1].status is Status.OK and findings[1].score == pytest.approx(100 / (1 + np.exp(-2.0)))


def test_a_hanging_method_times_out_as_an_error(image: DecodedImage) -> None:
    sleepy = Sleepy()
    start = time.perf_counter()
    findings = run_methods(image, [sleepy, Constant(0.0)], timeout=0.5)
    sleepy.release.set()
    assert time.perf_counter() - start < 5
    assert findings[0].status is Status.ERROR and "did not finish within" in findings[0].summary
    assert findings[1].status is Status.OK


class ThreadRecorder(Constant):
    """Counts how many methods of its kind run at once."""

    running = 0
    most = 0
    lock = threading.Lock()

    def examine(self, image: DecodedImage) -> Finding:
        with self.lock:
            ThreadRecorder.running += 1
            ThreadRecorder.most = max(ThreadRecorder.most, ThreadRecorder.running)
        time.sleep(0.05)
        with self.lock:
            ThreadRecorder.running -= 1
        return super().examine(image)


def test_methods_of_an_image_over_the_parallel_size_run_one_at_a_time(image: DecodedImage) -> None:
    """Past PARALLEL_MAX_PIXELS each method's working memory must come once, not once per thread."""
    large = replace(image, width=8000, height=PARALLEL_MAX_PIXELS // 8000 + 1)
    ThreadRecorder.most = 0
    findings = run_methods(large, [ThreadRecorder(0.0) for _ in range(4)])
    assert ThreadRecorder.most == 1 and all(f.status is Status.OK for f in findings)


class Costed(Constant):
    """Records the order in which methods of its kind start."""

    started: ClassVar[list[float]] = []

    def examine(self, image: DecodedImage) -> Finding:
        Costed.started.append(self.cost_seconds)
        return super().examine(image)


def costed(cost: float) -> Costed:
    """A Costed method whose class declares ``cost``, as a real method's does; its statistic is the cost too."""
    return type("Costed", (Costed,), {"cost_seconds": cost})(cost)


def test_the_costliest_methods_start_first_and_findings_keep_the_callers_order(image: DecodedImage) -> None:
    """Longest processing time first: a long method started last would keep one core busy alone."""
    Costed.started = []
    findings = run_methods(image, [costed(0.05), costed(0.5), costed(0.01), costed(0.2)], workers=1)
    assert Costed.started == [0.5, 0.2, 0.05, 0.01]
    assert [f.details["statistic"] for f in findings] == [0.05, 0.5, 0.01, 0.2]


class OpenCvThreads(Constant):
    """Records how many threads OpenCV would use while it runs."""

    seen: ClassVar[list[int]] = []

    def examine(self, image: DecodedImage) -> Finding:
        OpenCvThreads.seen.append(cv2.getNumThreads())
        return super().examine(image)


def test_opencv_runs_one_thread_while_methods_run_side_by_side_and_gets_its_own_back(image: DecodedImage) -> None:
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        OpenCvThreads.seen = []
        run_methods(image, [OpenCvThreads(0.0), OpenCvThreads(1.0)], workers=2)
        assert OpenCvThreads.seen == [1, 1] and cv2.getNumThreads() == 2
        OpenCvThreads.seen = []
        run_methods(image, [OpenCvThreads(0.0)], workers=1)  # alone, a method may use every core
        assert OpenCvThreads.seen == [2]
    finally:
        cv2.setNumThreads(before)


def test_method_not_applying_to_format_says_so(astronaut) -> None:
    class JpegOnly(Constant):
        applies_to = frozenset({__import__("forensics").ImageFormat.JPEG})

    finding = JpegOnly(1.0).run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.NOT_APPLICABLE and finding.score is None
    assert "PNG" in finding.summary


def test_fused_score_is_the_sum_of_reported_contributions(image: DecodedImage) -> None:
    findings = run_methods(image, [Constant(3.0), Constant(-1.0)])
    # both share the name "constant": fuse keys by method, so use distinct findings
    a = findings[0]
    b = Finding("other", "1", Status.OK, 20.0, "x", "y", {"statistic": 0.0})
    params = {"bias": -2.0, "weights": {"constant": 1.0, "other": 0.5}, "floors": {"constant": 5.0}}
    fused = fuse([a, b], (image.height, image.width), params)
    z, contributions = fused_logit({"constant": a.score, "other": 20.0}, params)
    assert fused.contributions == pytest.approx(contributions)
    assert all(c > 0 for c in contributions.values())
    assert fused.score == pytest.approx(100 / (1 + np.exp(-z)))
    assert fused.verdict == (Verdict.LIKELY_MANIPULATED if fused.score >= 50 else Verdict.NO_EVIDENCE)
    assert fused.heatmap is not None and fused.heatmap.shape == (512, 512)
    # the map is scaled by the method's score: top-left bright, the rest dark
    assert fused.heatmap[:200, :200].min() == pytest.approx(a.score / 100, abs=0.01)
    assert fused.heatmap[300:, 300:].max() == 0.0


def test_no_applicable_method_gives_no_score(image: DecodedImage) -> None:
    fused = fuse([Finding("x", "1", Status.NOT_APPLICABLE, None, "n/a", "n/a")], (10, 10))
    assert fused.score is None and fused.verdict == Verdict.INCONCLUSIVE


def test_analyze_reports_file_facts(astronaut) -> None:
    data = jpeg_bytes(astronaut)
    report = analyze(data, filename="a.jpg", methods=[Constant(0.0)]).to_dict()
    assert report["image"]["width"] == 512 and report["image"]["format"] == "jpeg"
    assert report["sha256"] == __import__("hashlib").sha256(data).hexdigest()
    assert [f["method"] for f in report["findings"]] == ["constant"]
