"""Fit the score calibration and the fusion from labelled results, and measure them honestly.

What is fitted (``fit_model``), on engine results over labelled folders (``Row``):

1. Each method's logistic (statistic -> 0-100 score). Its centre, the method's own decision
   line, leaves at most 1 - ``AUTHENTIC_QUANTILE`` of the benchmarks' authentic images at or
   over it, so a method alone flags few genuine photos; its scale puts the median authentic
   image at a score of ``MEDIAN_AUTHENTIC_SCORE``. Rule-based methods (``fit_logistic = False``:
   metadata, integrity, AI metadata, encoder tables) keep the line their rules define.
2. Each method's evidence floor: its score on the median authentic image (at least
   ``fusion.FLOOR_SCORE``). Evidence is counted above it only, so a method that found no more
   than a typical genuine photo shows contributes nothing (see ``forensics/fusion.py``).
3. Fusion: non-negative weights over the methods' evidence, fitted to rank each dataset's
   forgeries above its originals (``fit_fusion``), then scaled and offset by a class- and
   dataset-balanced logistic regression; the bias is lowered until at most ``max_fpr(dataset)`` of every
   dataset's authentic images score 50 or more.
4. Which methods take part (``select_methods``): backward elimination drops, one at a time,
   a method whose removal lowers no held-out dataset's AUC (the fusion refitted
   leave-one-dataset-out each time); it gets weight 0.

How it is measured (``leave_one_dataset_out``): for every dataset the whole of 1-4 is refitted
without it, and without every generated image whose original came from it, and the held-out
rows are scored by that model; a method that ships data collected from the datasets
(``Method.uses_dataset_data``) recomputes its statistic without the held-out dataset's share.
Every row is thus scored once by a model that never saw its dataset or its original. The
method selection inside each fold uses only the fold's training datasets (nested), so the
figures are not chosen on the data they are reported for. ``grouped_cross_validation`` gives
within-dataset figures with folds that keep each source (original, contributor, subject)
together, labelled as such; in-sample figures are the fitted model on everything.
"""

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from forensics.calibration import Logistic
from forensics.dataset import POSITIVE_LABELS, is_generated, source_group
from forensics.evaluation import Interval, grouped_auc_interval, roc_auc
from forensics.fusion import FLOOR_SCORE, evidence, score_of_logit
from forensics.methods import REGISTRY

AUTHENTIC_QUANTILE = 0.97
MEDIAN_AUTHENTIC_SCORE = 5.0
L2 = 0.05
#: L1 on the fusion weights: a method must improve some dataset's ranking by more than this to
#: be counted at all; without it the pairwise loss buys margin on datasets already separated
#: with small weights on weak methods, and each such weight reorders the datasets that are not.
L1 = 0.02
#: Log-odds by which the bias keeps the first authentic image over the allowed rate below the
#: line: enough to survive rounding the written weights and bias and to show under 50 at one decimal.
FPR_MARGIN = 0.01
#: A method is kept when leaving it out lowers some held-out dataset's AUC by more than this.
SELECTION_MIN_GAIN = 0.005
#: Pairs of one dataset the ranking loss uses at most (a seeded sample beyond it): the loss is an
#: average, and a few thousand pairs estimate it as well as the 97,000 of the generated set.
MAX_PAIRS = 3000
#: Folds of the within-dataset cross-validation.
CV_FOLDS = 5
#: The false-positive rate at 50 allowed among one training dataset's authentic images.
FprLimit = Callable[[str], float]


@dataclass(frozen=True, slots=True)
class Row:
    """One image's engine result, as ``scripts/calibrate.py`` caches it."""

    file: str
    dataset: str
    #: The real dataset the image's original belongs to: ``dataset`` itself for benchmark images,
    #: the origin recorded in ``source`` for generated ones.
    origin: str
    #: Images of one group (one original, contributor or subject) stay on one side of a split.
    group: str
    label: str
    kind: str
    statistic: Mapping[str, float]
    details: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        return self.label in POSITIVE_LABELS

    @classmethod
    def from_result(cls, result: Mapping[str, Any], generated: bool) -> "Row":
        """A row from ``ImageResult.to_dict()``; ``generated`` when ``source`` is ``<origin dataset>:<original>``."""
        source = str(result.get("source") or "")
        origin = source.split(":", 1)[0] if generated and ":" in source else result["dataset"]
        return cls(
            file=result["file"],
            dataset=result["dataset"],
            origin=origin,
            group=source_group(result["dataset"], result["file"], source, generated),
            label=result["label"],
            kind=result.get("kind") or "",
            statistic=result["statistic"],
            details=result.get("details") or {},
        )


@dataclass(frozen=True, slots=True)
class Model:
    """Everything fitted: per-method logistics and evidence floors, fusion weights and bias."""

    logistics: Mapping[str, Logistic]
    floors: Mapping[str, float]
    weights: Mapping[str, float]
    bias: float

    def scores(self, rows: Sequence[Row], excluded: frozenset[str] = frozenset()) -> np.ndarray:
        """Fused 0-100 scores of ``rows``, statistics recomputed without the ``excluded`` datasets."""
        x = features(rows, list(self.weights), self.logistics, self.floors, excluded)
        w = np.array(list(self.weights.values()))
        return np.array([score_of_logit(z) for z in self.bias + x @ w])

    def fusion_params(self) -> dict[str, Any]:
        return {
            "bias": round(self.bias, 6),
            "weights": {n: round(float(v), 6) for n, v in self.weights.items()},
            "floors": {n: round(float(v), 4) for n, v in self.floors.items()},
        }


def statistic_of(row: Row, name: str, excluded: frozenset[str]) -> float | None:
    """A method's statistic for ``row``, as the method would compute it without the ``excluded`` datasets."""
    if name not in row.statistic:
        return None
    method = REGISTRY.get(name)
    if excluded and method is not None and method.uses_dataset_data and name in row.details:
        return method.statistic_excluding(row.details[name], excluded)
    return float(row.statistic[name])


def fit_logistic(authentic: np.ndarray, default: Logistic) -> Logistic:
    """Decision line with at most 1 - AUTHENTIC_QUANTILE of the authentic statistics at or above it
    (half-way between the last one allowed over it and the next), the median at
    MEDIAN_AUTHENTIC_SCORE; both in the default's transform of the statistic."""
    if authentic.size < 10:
        return default
    values = np.sort([default.transform(float(v)) for v in authentic])
    allowed = int(math.floor((1.0 - AUTHENTIC_QUANTILE) * values.size))
    center = float(values[-1] if allowed == 0 else (values[-allowed - 1] + values[-allowed]) / 2.0)
    median = float(np.median(values))
    if not center > median:
        return default
    scale = (center - median) / math.log(100.0 / MEDIAN_AUTHENTIC_SCORE - 1.0)
    source = f"fitted: at most {allowed} of {values.size} authentic over the line" + (", log1p of the statistic" if default.log else "")
    return Logistic(center=round(center, 6), scale=round(scale, 6), source=source, log=default.log)


def fit_method_scales(rows: Sequence[Row], names: Sequence[str], excluded: frozenset[str]) -> tuple[dict[str, Logistic], dict[str, float]]:
    """Each method's logistic and evidence floor (its score on the median authentic image) from ``rows``."""
    logistics, floors = {}, {}
    for name in names:
        # genuine photos of the benchmarks only: a generated set's authentic images are the same
        # originals again, re-saved, and would count each photo several times
        values = [statistic_of(r, name, excluded) for r in rows if r.label == "authentic" and not is_generated(r.dataset)]
        authentic = np.array([v for v in values if v is not None])
        method = REGISTRY[name]
        logistic = fit_logistic(authentic, method.default_logistic) if method.fit_logistic else method.default_logistic
        logistics[name] = logistic
        floor = logistic.score(float(np.median(authentic))) if authentic.size else FLOOR_SCORE
        floors[name] = max(FLOOR_SCORE, floor)
    return logistics, floors


def features(
    rows: Sequence[Row], names: Sequence[str], logistics: Mapping[str, Logistic], floors: Mapping[str, float], excluded: frozenset[str]
) -> np.ndarray:
    """Evidence matrix (rows x methods); a method that did not score an image contributes 0."""
    x = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            value = statistic_of(row, name, excluded)
            if value is not None:
                x[i, j] = evidence(logistics[name].score(value), floors[name])
    return x


def balanced_weights(rows: Sequence[Row]) -> np.ndarray:
    """Sample weights that give every (dataset, class) the same total."""
    counts: dict[tuple[str, bool], int] = {}
    for row in rows:
        counts[(row.dataset, row.positive)] = counts.get((row.dataset, row.positive), 0) + 1
    w = np.array([1.0 / counts[(r.dataset, r.positive)] for r in rows])
    return w * len(rows) / w.sum()


def fit_fusion(x: np.ndarray, y: np.ndarray, w: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    """Non-negative fusion weights that rank forgeries above originals *within* each dataset.

    The direction of the weight vector minimises a pairwise logistic (RankNet-style) loss over
    every (forgery, original) pair of the same dataset, each dataset weighted equally, with L1
    and L2 on the weights: the target is each dataset's ROC AUC. A likelihood fit pooled over
    datasets instead trades one dataset's ranking for another's calibration. Scale and bias then
    come from a weighted 1-D logistic regression on the fused sum, so scores stay log-odds.
    """
    pairs = []
    rng = np.random.default_rng(0)
    for group in np.unique(groups):
        pos, neg = np.flatnonzero((groups == group) & (y == 1)), np.flatnonzero((groups == group) & (y == 0))
        if pos.size and neg.size:
            p, n = (a.ravel() for a in np.meshgrid(pos, neg, indexing="ij"))
            if p.size > MAX_PAIRS:
                pick = rng.choice(p.size, MAX_PAIRS, replace=False)
                p, n = p[pick], n[pick]
            pairs.append(x[p] - x[n])
    if not pairs or x.shape[1] == 0:
        return _prior_log_odds(y, w), np.zeros(x.shape[1])

    def rank_loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(weights)
        for diff in pairs:
            margin = diff @ weights
            total += float(np.mean(np.logaddexp(0.0, -margin)))
            grad += diff.T @ (-1.0 / (1.0 + np.exp(margin))) / len(margin)
        penalty = L1 * float(weights.sum()) + L2 * float(weights @ weights)
        return total / len(pairs) + penalty, grad / len(pairs) + L1 + 2 * L2 * weights

    res = minimize(rank_loss, np.full(x.shape[1], 0.5), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * x.shape[1])
    direction = x @ res.x

    def log_loss(theta: np.ndarray) -> float:
        z = theta[0] + theta[1] * direction
        return float(np.sum(w * (np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y))) / w.sum())

    bias, scale = minimize(log_loss, np.array([0.0, 1.0]), method="L-BFGS-B", bounds=[(None, None), (0.0, None)]).x
    return float(bias), scale * res.x


def _prior_log_odds(y: np.ndarray, w: np.ndarray) -> float:
    """The weighted log-odds of the positive class: the bias of a fusion with no usable method."""
    positive = float(np.sum(w * y)) / float(np.sum(w))
    return math.log(max(positive, 1e-6) / max(1 - positive, 1e-6))


def limit_fpr(bias: float, x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray, max_fpr: FprLimit) -> float:
    """Lower the bias until, in every dataset, at most ``max_fpr(dataset)`` of authentic rows score >= 50."""
    for group in np.unique(groups):
        z_neg = np.sort(x[(y == 0) & (groups == group)] @ weights)[::-1]
        allowed = int(math.floor(max_fpr(str(group)) * z_neg.size))
        if allowed < z_neg.size:
            bias = min(bias, -z_neg[allowed] - FPR_MARGIN)  # the (allowed+1)-th highest authentic stays below 0
    return bias


def fit_model(rows: Sequence[Row], names: Sequence[str], max_fpr: FprLimit, excluded: frozenset[str] = frozenset()) -> Model:
    """Fit logistics, floors, fusion weights and bias on ``rows`` over the methods ``names``."""
    logistics, floors = fit_method_scales(rows, names, excluded)
    x = features(rows, names, logistics, floors, excluded)
    y = np.array([1.0 if r.positive else 0.0 for r in rows])
    groups = np.array([r.dataset for r in rows])
    bias, weights = fit_fusion(x, y, balanced_weights(rows), groups)
    bias = limit_fpr(bias, x, y, groups, weights, max_fpr)
    return Model(logistics, floors, dict(zip(names, (float(v) for v in weights), strict=True)), bias)


def holdout_keys(rows: Sequence[Row]) -> list[str]:
    """The benchmark datasets: each is held out in turn (generated images go with their origin)."""
    return sorted({r.origin for r in rows})


def leave_one_dataset_out(
    rows: Sequence[Row],
    names: Sequence[str],
    max_fpr: FprLimit,
    *,
    select: bool = True,
    excluded: frozenset[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Every row's fused score from a model fitted without its dataset (and its original's dataset).

    With ``select`` each fold first chooses its methods (:func:`select_methods`) on its own
    training rows. Returns the scores and, per held-out dataset, the methods with a weight.
    """
    out = np.full(len(rows), np.nan)
    kept: dict[str, list[str]] = {}
    for key in holdout_keys(rows):
        train = [r for r in rows if key not in (r.dataset, r.origin)]
        test_index = [i for i, r in enumerate(rows) if key in (r.dataset, r.origin)]
        fold_excluded = excluded | {key}
        chosen = select_methods(train, names, max_fpr, fold_excluded) if select else list(names)
        model = fit_model(train, chosen, max_fpr, fold_excluded)
        out[test_index] = model.scores([rows[i] for i in test_index], fold_excluded)
        kept[key] = [n for n in chosen if model.weights[n] > 0]
        if progress is not None:
            progress(key)
    return out, kept


def dataset_aucs(rows: Sequence[Row], scores: np.ndarray) -> dict[str, float]:
    """ROC AUC of ``scores`` in every dataset that has both classes.

    Pairs are formed within one origin only: a generated set's held-out scores come from one
    model per origin dataset, and ranking one model's scores against another's would measure
    their calibration, not the detection. For benchmark datasets (one origin) this is the plain AUC.
    """
    aucs = {}
    for name in sorted({r.dataset for r in rows}):
        concordant = pairs = 0.0
        for origin in sorted({r.origin for r in rows if r.dataset == name}):
            pos = [float(s) for s, r in zip(scores, rows, strict=True) if r.dataset == name and r.origin == origin and r.positive]
            neg = [float(s) for s, r in zip(scores, rows, strict=True) if r.dataset == name and r.origin == origin and r.label == "authentic"]
            auc = roc_auc(pos, neg)
            if auc is not None:
                concordant += auc * len(pos) * len(neg)
                pairs += len(pos) * len(neg)
        if pairs:
            aucs[name] = concordant / pairs
    return aucs


def dataset_auc_intervals(rows: Sequence[Row], scores: np.ndarray) -> dict[str, Interval]:
    """The interval of each AUC of :func:`dataset_aucs`: a bootstrap that draws whole groups (an
    original, contributor or subject: ``Row.group``) and pairs within one origin
    (:func:`forensics.evaluation.grouped_auc_interval`)."""
    intervals = {}
    for name in sorted({r.dataset for r in rows}):
        index = [i for i, r in enumerate(rows) if r.dataset == name]
        interval = grouped_auc_interval(
            scores[index],
            [rows[i].positive for i in index],
            [rows[i].label == "authentic" for i in index],
            [rows[i].group for i in index],
            [rows[i].origin for i in index],
        )
        if interval is not None:
            intervals[name] = interval
    return intervals


@dataclass(frozen=True)
class Part:
    """One part of a dataset (images of one origin folder, or one kind of edit with every genuine image)
    and its AUC with the interval, as :func:`dataset_aucs` and :func:`dataset_auc_intervals` give them."""

    label: str
    positives: int
    negatives: int
    auc: float
    interval: Interval | None


def breakdown(rows: Sequence[Row], scores: np.ndarray, name: str) -> list[Part]:
    """Dataset ``name``'s AUC per origin folder, then per kind of edit (each kind's positives against
    all the dataset's genuine images) where it has several: where a generated set is weak, since one
    AUC over eight folders and four kinds of edit hides which of them the engine misses."""
    members = [i for i, r in enumerate(rows) if r.dataset == name]
    subsets = [(f"from {o}", [i for i in members if rows[i].origin == o]) for o in sorted({rows[i].origin for i in members})]
    kinds = sorted({rows[i].kind for i in members if rows[i].positive})
    if len(kinds) > 1:
        subsets += [(f"kind {k}", [i for i in members if not rows[i].positive or rows[i].kind == k]) for k in kinds]
    parts = []
    for label, index in subsets:
        subset, values = [rows[i] for i in index], scores[index]
        auc = dataset_aucs(subset, values).get(name)
        if auc is not None:
            positives = sum(r.positive for r in subset)
            parts.append(Part(label, positives, len(subset) - positives, auc, dataset_auc_intervals(subset, values).get(name)))
    return parts


def select_methods(rows: Sequence[Row], names: Sequence[str], max_fpr: FprLimit, excluded: frozenset[str] = frozenset()) -> list[str]:
    """The methods that help some held-out dataset, by backward elimination on leave-one-dataset-out AUCs.

    Each round judges every remaining method against the fusion of the others (each fusion
    refitted leave-one-dataset-out on ``rows``) and drops the one whose removal costs least,
    while that cost stays under SELECTION_MIN_GAIN on every dataset; among methods that cost
    nothing, the one with the smallest weight in the fusion of all that remain goes first.
    Dropping one method a round keeps one of two redundant methods (CASIA's forgeries are found
    both by the editor their EXIF names and by their compression history), where dropping all
    at once loses both.
    """

    def aucs(methods: Sequence[str]) -> dict[str, float]:
        return dataset_aucs(rows, leave_one_dataset_out(rows, methods, max_fpr, select=False, excluded=excluded)[0])

    kept = list(names)
    base = aucs(kept)
    while len(kept) > 1:
        trials = {name: aucs([n for n in kept if n != name]) for name in kept}
        cost = {name: max((base[d] - without.get(d, 0.5) for d in base), default=0.0) for name, without in trials.items()}
        weights = fit_model(rows, kept, max_fpr, excluded).weights
        weakest = min(kept, key=lambda n: (max(cost[n], SELECTION_MIN_GAIN), weights[n], -kept.index(n)))
        if cost[weakest] > SELECTION_MIN_GAIN:
            break
        kept.remove(weakest)
        base = trials[weakest]
    return kept


def grouped_cross_validation(rows: Sequence[Row], names: Sequence[str], max_fpr: FprLimit, folds: int = CV_FOLDS) -> np.ndarray:
    """Within-dataset cross-validated scores: folds assigned by a stable hash of each row's group,
    so every original, contributor or subject falls in one fold; the other datasets stay in every
    training set (this is not a held-out-dataset figure)."""
    fold_of = np.array([zlib.crc32(f"{r.dataset}/{r.group}".encode()) % folds for r in rows])
    out = np.full(len(rows), np.nan)
    for k in range(folds):
        train = [r for r, f in zip(rows, fold_of, strict=True) if f != k]
        test_index = np.flatnonzero(fold_of == k)
        model = fit_model(train, names, max_fpr)
        out[test_index] = model.scores([rows[i] for i in test_index])
    return out


def methods_in(rows: Iterable[Row]) -> list[str]:
    """Registered methods that may join the fusion and scored at least one row, in registry order."""
    seen = {n for r in rows for n in r.statistic}
    return [n for n, m in REGISTRY.items() if n in seen and m.joins_fusion]
