"""Depth and segmentation metrics, one implementation for training, export, benchmark and demo reports.

Depth metrics are computed over the pixels where both the prediction and the ground truth are finite and
positive (the caller may narrow that with ``mask``); each result also says how many pixels it covered.
Accumulators sum over frames, so a set's metric is over all its pixels, not a mean of per-frame values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ['ConfusionMatrix', 'DepthErrors', 'depth_errors']


@dataclass
class DepthErrors:
    """Running sums for RMSE, AbsRel and delta < 1.25 (and coverage) over any number of frames."""

    sq_err: float = 0.0
    abs_rel: float = 0.0
    delta1: int = 0
    count: int = 0
    gt_pixels: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> DepthErrors:
        """Accumulate one frame. ``gt_pixels`` counts ground-truth pixels (within ``mask``), ``count`` those
        where the prediction also has a value."""
        pred = np.asarray(pred, np.float64)
        gt = np.asarray(gt, np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in shape')
        with np.errstate(invalid='ignore'):
            has_gt = np.isfinite(gt) & (gt > 0)
            if mask is not None:
                has_gt &= mask
            valid = has_gt & np.isfinite(pred) & (pred > 0)
        p, g = pred[valid], gt[valid]
        self.sq_err += float(np.sum((p - g) ** 2))
        self.abs_rel += float(np.sum(np.abs(p - g) / g))
        self.delta1 += int(np.sum(np.maximum(p / g, g / p) < 1.25))
        self.count += int(valid.sum())
        self.gt_pixels += int(has_gt.sum())
        return self

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.sq_err / self.count)) if self.count else float('nan')

    @property
    def absrel(self) -> float:
        return self.abs_rel / self.count if self.count else float('nan')

    @property
    def delta1_ratio(self) -> float:
        return self.delta1 / self.count if self.count else float('nan')

    @property
    def coverage(self) -> float:
        """Share of ground-truth pixels where the prediction gives a value."""
        return self.count / self.gt_pixels if self.gt_pixels else float('nan')

    def summary(self) -> dict[str, float]:
        return {'rmse': self.rmse, 'absrel': self.absrel, 'delta1': self.delta1_ratio,
                'coverage': self.coverage, 'pixels': self.count}


def depth_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """RMSE (m), AbsRel, delta < 1.25, coverage and pixel count for one frame or stacked frames."""
    return DepthErrors().add(pred, gt, mask).summary()


@dataclass
class ConfusionMatrix:
    """Segmentation confusion matrix; rows = ground truth class, columns = predicted class."""

    num_classes: int
    matrix: np.ndarray = field(init=False)
    #: Ground-truth pixels per class whose prediction was not a class id at all (out of range).
    misses: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.misses = np.zeros(self.num_classes, np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray, ignore_index: int | None = 255) -> ConfusionMatrix:
        """Accumulate one frame of class ids; ground-truth pixels equal to ``ignore_index`` or out of
        range are skipped; predictions out of range count as wrong for their ground-truth class."""
        pred = np.asarray(pred).ravel().astype(np.int64)
        gt = np.asarray(gt).ravel().astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f'prediction has {pred.size} pixels, ground truth {gt.size}')
        keep = (gt >= 0) & (gt < self.num_classes)
        if ignore_index is not None:
            keep &= gt != ignore_index
        pred, gt = pred[keep], gt[keep]
        in_range = (pred >= 0) & (pred < self.num_classes)
        self.matrix += np.bincount(gt[in_range] * self.num_classes + pred[in_range],
                                   minlength=self.num_classes ** 2).reshape(self.num_classes, -1)
        self.misses += np.bincount(gt[~in_range], minlength=self.num_classes)
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) + self.misses - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur in the ground truth or the prediction."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum() + self.misses.sum()
        return float(np.trace(self.matrix) / total) if total else float('nan')
