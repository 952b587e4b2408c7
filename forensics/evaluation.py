"""Measure the engine on labelled folders (the ``index.csv`` layout of ``../shared/data``).

Image level: ROC AUC, TPR at 5 % FPR, and the false-positive / true-positive rates at the
decision line 50, per method and fused. Pixel level: F1 of each map thresholded at 0.5
against the ground-truth masks. Same-format subsets are reported too, because a score that
keys on the file format (casia2: tampered TIFF vs authentic JPEG) is not detection.
"""

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import norm

from forensics.dataset import Sample, is_generated, source_group
from forensics.errors import ForensicsError
from forensics.finding import Status
from forensics.fusion import DECISION_LINE
from forensics.methods import REGISTRY
from forensics.methods.base import Method
from forensics.pipeline import Report, analyze

logger = logging.getLogger(__name__)

FUSED = "fused"
#: Two-sided coverage of the interval printed beside every AUC and rate.
INTERVAL_LEVEL = 0.95
#: Resamples of the grouped bootstrap behind an AUC's interval.
BOOTSTRAP_RESAMPLES = 2000

#: How the printed intervals are made, printed under the tables.
INTERVAL_NOTE = (
    f"({INTERVAL_LEVEL:.0%} intervals: AUC by a bootstrap that draws whole originals, contributors or subjects; "
    "rates at 50 by Wilson, each image one trial)"
)
#: (low, high) of an interval.
Interval = tuple[float, float]


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
    #: INTERVAL_LEVEL intervals: the AUC's by grouped bootstrap, the false-positive rate's by Wilson.
    auc_interval: Interval | None = None
    fpr_interval: Interval | None = None


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


def wilson_interval(hits: int, total: int, level: float = INTERVAL_LEVEL) -> Interval | None:
    """Wilson score interval of the rate ``hits / total``.

    The rates here come from a few dozen images and are often 0 or a few hits, where the normal
    approximation fails (a zero-width interval at 0 of 23); the Wilson interval keeps its
    coverage there (E. B. Wilson, JASA 22, 1927; recommended for small samples by Brown, Cai &
    DasGupta, "Interval estimation for a binomial proportion", Statistical Science 16, 2001).
    Each image counts as one trial: where one original comes in several versions the true
    interval is wider.
    """
    if total <= 0:
        return None
    z = float(norm.ppf(0.5 + level / 2))
    p = hits / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def grouped_auc_interval(
    scores: Sequence[float] | np.ndarray,
    positive: Sequence[bool] | np.ndarray,
    negative: Sequence[bool] | np.ndarray,
    groups: Sequence[str],
    strata: Sequence[str] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = INTERVAL_LEVEL,
    seed: int = 0,
) -> Interval | None:
    """Percentile interval of the ROC AUC under a bootstrap that draws whole groups.

    A benchmark's forgeries are often several edits of one original, and its originals come in
    versions (CoMoFoD's JPEG qualities of one picture): together they are one piece of evidence,
    not several. Drawing the groups (an original with its versions and forgeries, a contributor,
    a subject) with replacement keeps them together, the bootstrap for hierarchical data of
    Davison & Hinkley (Bootstrap Methods and their Application, 1997, section 3.8). Pairs are
    formed within one stratum only (``strata``: as ``forensics.fitting.dataset_aucs`` pairs
    within one origin). Resamples that draw no pair are skipped; None when there is no pair.
    """
    values = np.asarray(scores, np.float64)
    pos, neg = np.asarray(positive, bool), np.asarray(negative, bool)
    _, group = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    _, stratum = np.unique(np.asarray(strata if strata is not None else [""] * values.size, dtype=str), return_inverse=True)
    # per stratum: the groups of its positives and negatives, and each pair's outcome (1, 0.5 for a tie, 0)
    blocks = []
    for s in np.unique(stratum):
        p, n = np.flatnonzero(pos & (stratum == s)), np.flatnonzero(neg & (stratum == s))
        if p.size and n.size:
            a, b = values[p][:, None], values[n][None, :]
            blocks.append((group[p], group[n], (a > b) + 0.5 * (a == b)))
    if not blocks:
        return None
    rng = np.random.default_rng(seed)
    n_groups = int(group.max()) + 1
    drawn = rng.integers(n_groups, size=(resamples, n_groups))
    counts = np.zeros((resamples, n_groups))
    np.add.at(counts, (np.repeat(np.arange(resamples), n_groups), drawn.ravel()), 1.0)
    concordant, pairs = np.zeros(resamples), np.zeros(resamples)
    for group_pos, group_neg, outcome in blocks:
        w_pos, w_neg = counts[:, group_pos], counts[:, group_neg]
        concordant += ((w_pos @ outcome) * w_neg).sum(axis=1)
        pairs += w_pos.sum(axis=1) * w_neg.sum(axis=1)
    aucs = concordant[pairs > 0] / pairs[pairs > 0]
    if aucs.size == 0:
        return None
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


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
    """Image- and pixel-level figures of one method (or ``fused``) over ``results``, with intervals."""
    scored = [r for r in results if name in r.score and (r.sample.positive or r.sample.label == "authentic")]
    pos = [r.score[name] for r in scored if r.sample.positive]
    neg = [r.score[name] for r in scored if not r.sample.positive]
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
        auc_interval=grouped_auc_interval(
            [r.score[name] for r in scored],
            [r.sample.positive for r in scored],
            [not r.sample.positive for r in scored],
            [source_group(r.dataset, str(r.sample.path), r.sample.source, is_generated(r.dataset)) for r in scored],
        ),
        fpr_interval=wilson_interval(int(np.sum(np.asarray(neg) >= DECISION_LINE)), len(neg)),
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


def format_interval(interval: Interval | None, digits: int = 2) -> str:
    """``[low-high]``, or empty when there is none."""
    return "" if interval is None else f"[{interval[0]:.{digits}f}-{interval[1]:.{digits}f}]"


def format_auc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, groups: Sequence[str]) -> str:
    """``0.880 [0.79-0.98]``: the ROC AUC of ``positive`` over ``negative`` rows and its
    grouped-bootstrap interval (:func:`grouped_auc_interval`); ``-`` without both classes."""
    auc = roc_auc(list(scores[positive]), list(scores[negative]))
    return "-" if auc is None else f"{auc:.3f} {format_interval(grouped_auc_interval(scores, positive, negative, groups))}"


def format_rate(hits: int, total: int) -> str:
    """``4.8% (2/42) [1.3-15.8]``: a rate, its count and its Wilson interval, in per cent; ``-`` of nothing."""
    interval = wilson_interval(hits, total)
    if interval is None:
        return "-"
    return f"{100 * hits / total:.1f}% ({hits}/{total}) [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]"


def format_table(title: str, rows: Sequence[Metrics]) -> str:
    level = f"{INTERVAL_LEVEL:.0%}"
    lines = [
        f"## {title}",
        f"{'method':<14} {'pos':>4} {'neg':>4} {'AUC':>6} {f'({level} interval)':<13} {'TPR@5%FPR':>10} "
        f"{'FPR@50':>7} {f'({level} interval)':<13} {'TPR@50':>7} {'pixF1':>6} {'masks':>5}",
    ]
    for m in rows:
        lines.append(
            f"{m.name:<14} {m.n_pos:>4} {m.n_neg:>4} {_fmt(m.auc):>6} {format_interval(m.auc_interval):<13} {_fmt(m.tpr_at_5fpr):>10} "
            f"{_fmt(m.fpr_at_50):>7} {format_interval(m.fpr_interval):<13} {_fmt(m.tpr_at_50):>7} {_fmt(m.pixel_f1):>6} {m.n_masks:>5}"
        )
    return "\n".join(lines)


def report_tables(results: Sequence[ImageResult], title: str) -> str:
    names = method_names(results)
    parts = [format_table(title, [metrics(results, n) for n in names])]
    for suffix, group in same_format_subsets(results).items():
        parts.append(format_table(f"{title} [same format: {suffix} only]", [metrics(group, n) for n in names]))
    return "\n\n".join(parts) + f"\n{INTERVAL_NOTE}"


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
