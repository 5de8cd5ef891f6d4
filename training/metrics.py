"""Evaluation metrics as small pure numpy functions.

Counting and detection (SPAIR / SPLIT-SPAIR, factorised-representation thesis ch. 6):
count accuracy, object count error, AP averaged over IoU thresholds 0.1:0.1:0.9.
Segmentation (MONet, MONet-RN50* thesis §5.2): foreground ARI, mean segmentation covering,
reconstruction MSE.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from split_perception.box_ops import box_iou  # noqa: F401 - re-exported for metric users

AP_IOU_THRESHOLDS = np.round(np.arange(0.1, 1.0, 0.1), 2)


# --------------------------------------------------------------------------- counting
def count_accuracy(pred_counts: Sequence[int], true_counts: Sequence[int]) -> float:
    """Fraction of images whose predicted object count is exactly right."""
    p, t = np.asarray(pred_counts), np.asarray(true_counts)
    _check_same_length(p, t)
    return float(np.mean(p == t)) if len(t) else float("nan")


def count_error(pred_counts: Sequence[int], true_counts: Sequence[int]) -> float:
    """Mean absolute difference between predicted and true object counts."""
    p, t = np.asarray(pred_counts, float), np.asarray(true_counts, float)
    _check_same_length(p, t)
    return float(np.mean(np.abs(p - t))) if len(t) else float("nan")


# --------------------------------------------------------------------------- detection
def average_precision_at(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    true_boxes: Sequence[np.ndarray],
    iou_threshold: float,
) -> float:
    """AP of one IoU threshold over a data set (all-point interpolated, as in VOC 2010+).

    Predictions of all images are ranked by score; each is a true positive when it matches a
    not-yet-matched ground-truth box of its own image with IoU >= threshold (greedy, best
    IoU first).
    """
    n_true = sum(len(t) for t in true_boxes)
    records = []  # (score, is_true_positive)
    for boxes, scores, truth in zip(pred_boxes, pred_scores, true_boxes, strict=True):
        boxes, scores = np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        iou = box_iou(boxes[order], truth) if len(truth) else np.zeros((len(order), 0))
        taken = np.zeros(len(truth), bool)
        for rank, i in enumerate(order):
            tp = False
            if iou.shape[1]:
                cand = np.where(taken, -1.0, iou[rank])
                j = int(np.argmax(cand))
                if cand[j] >= iou_threshold:
                    taken[j] = True
                    tp = True
            records.append((scores[i], tp))
    if n_true == 0:
        return float("nan")
    if not records:
        return 0.0
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([not r[1] for r in records])
    recall = tp / n_true
    precision = tp / np.maximum(tp + fp, 1)
    # all-point interpolation: area under the monotone (non-increasing) precision envelope
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))


def mean_average_precision(pred_boxes, pred_scores, true_boxes, thresholds=AP_IOU_THRESHOLDS) -> float:
    """AP averaged over IoU thresholds 0.1, 0.2, ..., 0.9 (thesis ch. 6)."""
    return float(np.mean([average_precision_at(pred_boxes, pred_scores, true_boxes, t) for t in thresholds]))


# --------------------------------------------------------------------------- segmentation
def adjusted_rand_index(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """ARI of two labelings of the same points (Hubert & Arabie 1985), via the contingency table.

    Matches sklearn.metrics.adjusted_rand_score (tested), including its convention that two
    single-cluster labelings score 1.
    """
    t = np.asarray(true_labels).reshape(-1)
    p = np.asarray(pred_labels).reshape(-1)
    _check_same_length(t, p)
    n = t.size
    if n < 2:
        return 1.0
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    table = np.zeros((ti.max() + 1, pi.max() + 1), np.int64)
    np.add.at(table, (ti, pi), 1)
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731 - pairs among x points
    sum_cells = comb(table).sum()
    sum_rows = comb(table.sum(1)).sum()
    sum_cols = comb(table.sum(0)).sum()
    expected = sum_rows * sum_cols / comb(n)
    max_index = (sum_rows + sum_cols) / 2.0
    if max_index == expected:  # both labelings trivial (one cluster or all singletons)
        return 1.0
    return float((sum_cells - expected) / (max_index - expected))


def foreground_ari(true_labels: np.ndarray, pred_labels: np.ndarray, background: int = 0) -> float:
    """ARI over ground-truth foreground pixels only (true label != background).

    An image without foreground has no defined FG-ARI and gives NaN (averaging skips it).
    """
    t = np.asarray(true_labels)
    fg = t != background
    if not fg.any():
        return float("nan")
    return adjusted_rand_index(t[fg], np.asarray(pred_labels)[fg])


def mean_segmentation_covering(true_labels: np.ndarray, pred_labels: np.ndarray, background: int = 0) -> float:
    """Unweighted mean over ground-truth foreground segments of the best IoU with any predicted segment.

    C(S' -> S) = 1/|S| sum_{R in S} max_{R' in S'} IoU(R, R'), S the non-empty ground-truth
    foreground masks, S' the predicted segments (MONet-RN50* thesis §5.2). IoU is over all
    pixels, so over-segmenting an object is penalised.
    """
    t = np.asarray(true_labels).reshape(-1)
    p = np.asarray(pred_labels).reshape(-1)
    _check_same_length(t, p)
    segments = [s for s in np.unique(t) if s != background]
    if not segments:
        return float("nan")
    _, pi = np.unique(p, return_inverse=True)
    pred_sizes = np.bincount(pi)
    scores = []
    for s in segments:
        mask = t == s
        inter = np.bincount(pi[mask], minlength=pred_sizes.size)
        union = mask.sum() + pred_sizes - inter
        scores.append(float(np.max(inter / union)))
    return float(np.mean(scores))


def reconstruction_mse(images: np.ndarray, reconstructions: np.ndarray) -> float:
    """Per-pixel mean squared error; images in [0, 1]."""
    a, b = np.asarray(images, float), np.asarray(reconstructions, float)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


# --------------------------------------------------------------------------- comparing two models
def paired_difference_interval(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of a - b, low, high): a percentile-bootstrap interval for the mean difference of two models'
    per-scene scores (e.g. 1 where the count is right) on the same scenes. The scenes are resampled
    together for both models, so what the scenes share (an easy draw, a hard one) cancels."""
    return pooled_difference_interval([(a, b)], resamples, level, seed)


def pooled_difference_interval(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """As paired_difference_interval for the mean over groups of each group's mean difference (the mean
    over test kinds, each kind weighing the same): each group is resampled within itself."""
    if not groups:
        raise ValueError("no groups")
    rng = np.random.default_rng(seed)
    means, draws = [], []
    for a, b in groups:
        a, b = np.asarray(a, float), np.asarray(b, float)
        _check_same_length(a, b)
        if not len(a):
            raise ValueError("no scenes")
        d = a - b
        means.append(d.mean())
        draws.append(d[rng.integers(0, len(d), (resamples, len(d)))].mean(1))
    pooled = np.mean(draws, axis=0)
    tail = 100 * (1 - level) / 2
    return float(np.mean(means)), float(np.percentile(pooled, tail)), float(np.percentile(pooled, 100 - tail))


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} vs {len(b)}")
