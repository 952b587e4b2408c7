"""Measure the engine on labelled folders (the ``index.csv`` layout of ``../shared/data``).

Image level: ROC AUC, TPR at 5 % FPR, and the false-positive / true-positive rates at the
decision line 50, per method and fused. Pixel level: F1 of each map thresholded at 0.5
against the ground-truth masks. Same-format subsets are reported too, because a score that
keys on the file format (casia2: tampered TIFF vs authentic JPEG) is not detection.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forensics.dataset import Sample
from forensics.errors import ForensicsError
from forensics.finding import Status
from forensics.fusion import DECISION_LINE
from forensics.methods import REGISTRY
from forensics.methods.base import Method
from forensics.pipeline import Report, analyze

logger = logging.getLogger(__name__)

FUSED = "fused"


@dataclass(slots=True)
class ImageResult:
    """One sample's outcome: per-method status, statistic and score; pixel F1 where masked."""

    sample: Sample
    dataset: str
    error: str | None = None
    status: dict[str, str] = field(default_factory=dict)
    statistic: dict[str, float] = field(default_factory=dict)
    score: dict[str, float] = field(default_factory=dict)
    pixel_f1: dict[str, float] = field(default_factory=dict)
    #: Details of the methods whose statistic depends on data they ship (``Method.uses_dataset_data``),
    #: kept so that a held-out evaluation can recompute it.
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "file": str(self.sample.path),
            "dataset": self.dataset,
            "label": self.sample.label,
            "kind": self.sample.kind,
            "source": self.sample.source,
            "error": self.error,
            "status": self.status,
            "statistic": self.statistic,
            "score": self.score,
            "pixel_f1": self.pixel_f1,
            "details": self.details,
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class Metrics:
    name: str
    n_pos: int
    n_neg: int
    auc: float | None
    tpr_at_5fpr: float | None
    fpr_at_50: float | None
    tpr_at_50: float | None
    pixel_f1: float | None
    n_masks: int


def pixel_f1(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of ``heatmap > threshold`` against the boolean ``mask`` (the map is resized to it)."""
    resized = cv2.resize(heatmap.astype(np.float32), (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    predicted = resized > threshold
    tp = float(np.count_nonzero(predicted & mask))
    denominator = float(np.count_nonzero(predicted) + np.count_nonzero(mask))
    return 0.0 if denominator == 0 else 2.0 * tp / denominator


def result_of(report: Report, sample: Sample, dataset: str) -> ImageResult:
    result = ImageResult(sample=sample, dataset=dataset, seconds=report.seconds)
    mask = sample.mask() if sample.positive else None
    for f in report.findings:
        result.status[f.method] = f.status.value
        if f.status is Status.OK and f.score is not None:
            result.statistic[f.method] = float(f.details["statistic"])
            result.score[f.method] = float(f.score)
            if REGISTRY.get(f.method) is not None and REGISTRY[f.method].uses_dataset_data:
                result.details[f.method] = dict(f.details)
            if mask is not None and f.heatmap is not None:
                result.pixel_f1[f.method] = pixel_f1(f.heatmap, mask)
    if report.fused.score is not None:
        result.score[FUSED] = report.fused.score
        if mask is not None and report.fused.heatmap is not None:
            result.pixel_f1[FUSED] = pixel_f1(report.fused.heatmap, mask)
    return result


def score_samples(
    samples: Iterable[Sample],
    dataset: str,
    methods: Sequence[Method] | None = None,
    progress: Callable[[Sample], None] | None = None,
) -> list[ImageResult]:
    """Run the engine over labelled ``samples``; unreadable files are kept with their error."""
    results = []
    for sample in samples:
        try:
            report = analyze(sample.path.read_bytes(), filename=sample.path.name, methods=methods)
            results.append(result_of(report, sample, dataset))
        except ForensicsError as exc:
            results.append(ImageResult(sample=sample, dataset=dataset, error=f"{exc.code}: {exc}"))
        if progress is not None:
            progress(sample)
    return results


def roc_auc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U)."""
    if not pos or not neg:
        return None
    p = np.asarray(pos, np.float64)[:, None]
    n = np.asarray(neg, np.float64)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def roc_curve(pos: Sequence[float], neg: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) over every threshold, from (0,0) to (1,1)."""
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    p, n = np.asarray(pos), np.asarray(neg)
    fpr = [0.0] + [float((n >= t).mean()) for t in thresholds]
    tpr = [0.0] + [float((p >= t).mean()) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def tpr_at_fpr(pos: Sequence[float], neg: Sequence[float], max_fpr: float = 0.05) -> float | None:
    if not pos or not neg:
        return None
    fpr, tpr = roc_curve(pos, neg)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def metrics(results: Sequence[ImageResult], name: str) -> Metrics:
    """Image- and pixel-level figures of one method (or ``fused``) over ``results``."""
    pos = [r.score[name] for r in results if r.sample.positive and name in r.score]
    neg = [r.score[name] for r in results if r.sample.label == "authentic" and name in r.score]
    f1s = [r.pixel_f1[name] for r in results if name in r.pixel_f1]
    return Metrics(
        name=name,
        n_pos=len(pos),
        n_neg=len(neg),
        auc=roc_auc(pos, neg),
        tpr_at_5fpr=tpr_at_fpr(pos, neg),
        fpr_at_50=float(np.mean(np.asarray(neg) >= DECISION_LINE)) if neg else None,
        tpr_at_50=float(np.mean(np.asarray(pos) >= DECISION_LINE)) if pos else None,
        pixel_f1=float(np.mean(f1s)) if f1s else None,
        n_masks=len(f1s),
    )


def method_names(results: Sequence[ImageResult]) -> list[str]:
    """Methods in report order, then the fused score(s) (``fused`` and any variant of it)."""
    names: dict[str, None] = {}
    for r in results:
        names.update(dict.fromkeys(r.status))
    fused: dict[str, None] = {FUSED: None}
    for r in results:
        fused.update(dict.fromkeys(k for k in r.score if k not in names))
    return [*names, *fused]


def same_format_subsets(results: Sequence[ImageResult]) -> dict[str, list[ImageResult]]:
    """Results grouped by file suffix, kept only where a suffix has both classes and the folder mixes suffixes."""
    groups: dict[str, list[ImageResult]] = {}
    for r in results:
        groups.setdefault(r.sample.suffix, []).append(r)
    if len(groups) < 2:
        return {}
    return {
        suffix: group
        for suffix, group in groups.items()
        if any(r.sample.positive for r in group) and any(r.sample.label == "authentic" for r in group)
    }


def _fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:.3f}"


def format_table(title: str, rows: Sequence[Metrics]) -> str:
    lines = [
        f"## {title}",
        f"{'method':<14} {'pos':>4} {'neg':>4} {'AUC':>6} {'TPR@5%FPR':>10} {'FPR@50':>7} {'TPR@50':>7} {'pixF1':>6} {'masks':>5}",
    ]
    for m in rows:
        lines.append(
            f"{m.name:<14} {m.n_pos:>4} {m.n_neg:>4} {_fmt(m.auc):>6} {_fmt(m.tpr_at_5fpr):>10} "
            f"{_fmt(m.fpr_at_50):>7} {_fmt(m.tpr_at_50):>7} {_fmt(m.pixel_f1):>6} {m.n_masks:>5}"
        )
    return "\n".join(lines)


def report_tables(results: Sequence[ImageResult], title: str) -> str:
    names = method_names(results)
    parts = [format_table(title, [metrics(results, n) for n in names])]
    for suffix, group in same_format_subsets(results).items():
        parts.append(format_table(f"{title} [same format: {suffix} only]", [metrics(group, n) for n in names]))
    return "\n\n".join(parts)


def plot_roc(results: Sequence[ImageResult], path: Path, title: str) -> None:
    """Write a ROC plot (one curve per method and the fused score) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in method_names(results):
        pos = [r.score[name] for r in results if r.sample.positive and name in r.score]
        neg = [r.score[name] for r in results if r.sample.label == "authentic" and name in r.score]
        if not pos or not neg:
            continue
        fpr, tpr = roc_curve(pos, neg)
        ax.plot(fpr, tpr, linewidth=2.5 if name == FUSED else 1.2, label=f"{name} (AUC {roc_auc(pos, neg):.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
