"""Accuracy of one loaded student model on a frame folder: depth RMSE, AbsRel, delta < 1.25, segmentation IoU.

``evaluate(backend, dataset_dir, frames=N) -> EvalResult`` runs a ``student_trt.backends.Backend`` over the
frames of an ``rc_offline.dataset`` folder (``rgb/``, ``depth/``, ``labels/``) exactly as the node does
(``Preprocessor``, ``backend.infer``, ``Postprocessor`` at the model's size) and accumulates
``rc_offline.metrics.DepthErrors`` and ``ConfusionMatrix`` over all pixels of all frames (a set's metric
is over its pixels, not a mean of per-frame values). The benchmark and the demo both call it.

Grid: metrics are computed at the model's output size (its input size, e.g. 240x320), the grid the student
publishes on. The ground truth (camera size, e.g. 480x640) is sampled on that grid by pixel-centre nearest
neighbour (``student_trt.postprocess.resize_nearest``): output pixel (i, j) takes ground-truth pixel
(floor((i + 0.5) * H / h), floor((j + 0.5) * W / w)), i.e. (2i + 1, 2j + 1) at a 2x downscale, the pixel
the depth fusion node's nearest resampling takes too. No depth is interpolated across an object edge and
every label stays a label. Depth is compared where the ground truth is finite and positive (``coverage``
says on which share of those pixels the prediction had a value); labels equal to 255 are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rc_offline.dataset import DatasetError, Frame, frame_stems, read_depth, read_image, read_rgb
from rc_offline.metrics import ConfusionMatrix, DepthErrors
from student_trt.postprocess import Postprocessor, resize_nearest
from student_trt.preprocess import Preprocessor

__all__ = ['EVAL_KINDS', 'IGNORE_LABEL', 'EvalResult', 'evaluate', 'ground_truth_on_grid', 'na',
           'read_labels', 'select_frames']

#: Sub-folders an evaluation set needs.
EVAL_KINDS = ('rgb', 'depth', 'labels')
#: Label value that marks pixels without ground truth.
IGNORE_LABEL = 255
GT_SAMPLING = ('ground truth sampled on the output grid by pixel-centre nearest neighbour: output pixel '
               '(i, j) takes pixel (floor((i + 0.5) H / h), floor((j + 0.5) W / w)), i.e. (2i+1, 2j+1) '
               'at a 2x downscale')


def na(reason: str) -> str:
    """The value of a figure that cannot be had, saying why (``'n/a: <reason>'``)."""
    return f'n/a: {reason}'


def _number_or_na(value: float, reason: str, digits: int = 6) -> float | str:
    return round(float(value), digits) if np.isfinite(value) else na(reason)


def select_frames(dataset_dir: str | Path, frames: int | None = None) -> list[Frame]:
    """The frames of ``dataset_dir`` to evaluate: all of them, or ``frames`` spread evenly over the set
    (first and last included), in name order.

    Raises:
        DatasetError: not a folder with rgb/, depth/ and labels/ holding matching files; ``frames`` < 1.
    """
    available = frame_stems(dataset_dir, EVAL_KINDS)
    if frames is None or frames >= len(available):
        return available
    if frames < 1:
        raise DatasetError(f'cannot evaluate on {frames} frames of {dataset_dir}')
    picks = np.unique(np.linspace(0, len(available) - 1, frames).round().astype(int))
    return [available[i] for i in picks]


def read_labels(path: str | Path) -> np.ndarray:
    """(H, W) class ids of a labels/ file (8- or 16-bit single channel, or an integer .npy).

    Raises:
        DatasetError: not a single-channel integer image.
    """
    labels = read_image(path)
    if labels.ndim != 2 or labels.dtype.kind not in 'ui':
        raise DatasetError(f'{path}: labels must be a single-channel integer image of class ids, got '
                           f'{labels.dtype} of shape {labels.shape}')
    return labels


def ground_truth_on_grid(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sample a ground-truth image (depth or labels) on a ``height`` x ``width`` output grid by pixel-centre
    nearest neighbour (see module doc); the image itself when it already has that size."""
    if image.shape[:2] == (height, width):
        return image
    return resize_nearest(image, height, width)


@dataclass
class EvalResult:
    """Accumulated accuracy of one model on a set (``add`` one frame at a time).

    Attributes:
        class_names: the model's classes (label id = index).
        depth: RMSE / AbsRel / delta < 1.25 sums over all frames.
        confusion: ground truth x prediction counts over all frames.
        frames: frames added.
        dataset: where the frames came from.
        grid: (height, width) the metrics were computed at.
    """

    class_names: tuple[str, ...]
    depth: DepthErrors = field(default_factory=DepthErrors)
    confusion: ConfusionMatrix | None = None
    frames: int = 0
    dataset: str = ''
    grid: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = ConfusionMatrix(len(self.class_names))

    def add(self, depth: np.ndarray, class_ids: np.ndarray, gt_depth: np.ndarray,
            gt_labels: np.ndarray) -> EvalResult:
        """Accumulate one frame: predictions at the output grid, ground truth at any size (sampled on the
        prediction's grid, see module doc).

        Raises:
            ValueError: depth and class-id predictions of different sizes.
        """
        if depth.shape != class_ids.shape:
            raise ValueError(f'depth {depth.shape} and class ids {class_ids.shape} differ in shape')
        height, width = depth.shape
        self.grid = (height, width)
        self.depth.add(depth, ground_truth_on_grid(gt_depth, height, width))
        self.confusion.add(class_ids, ground_truth_on_grid(gt_labels, height, width), IGNORE_LABEL)
        self.frames += 1
        return self

    def iou(self) -> dict[str, float | str]:
        """IoU per class name; ``'n/a: ...'`` for a class in neither the ground truth nor the prediction."""
        values = self.confusion.iou()
        return {name: _number_or_na(v, 'class in neither ground truth nor prediction')
                for name, v in zip(self.class_names, values, strict=True)}

    def summary(self, reason_if_empty: str = 'no frames evaluated') -> dict:
        """JSON-ready figures: numbers, or ``'n/a: <why>'`` strings where a figure has no value (with no
        frame added, every figure is ``'n/a: <reason_if_empty>'``)."""
        if self.frames == 0:
            reason = reason_if_empty
            return {'frames': 0, 'dataset': self.dataset, 'rmse_m': na(reason), 'absrel': na(reason),
                    'delta1': na(reason), 'coverage': na(reason), 'depth_pixels': 0,
                    'iou': {name: na(reason) for name in self.class_names}, 'miou': na(reason),
                    'pixel_accuracy': na(reason), 'confusion_matrix': self.confusion.matrix.tolist()}
        no_depth = 'no pixel with both ground-truth and predicted depth'
        no_labels = 'no labelled pixel'
        return {
            'frames': self.frames,
            'dataset': self.dataset,
            'grid': list(self.grid),
            'rmse_m': _number_or_na(self.depth.rmse, no_depth),
            'absrel': _number_or_na(self.depth.absrel, no_depth),
            'delta1': _number_or_na(self.depth.delta1_ratio, no_depth),
            'coverage': _number_or_na(self.depth.coverage, 'no ground-truth depth'),
            'depth_pixels': self.depth.count,
            'iou': self.iou(),
            'miou': _number_or_na(self.confusion.miou(), no_labels),
            'pixel_accuracy': _number_or_na(self.confusion.pixel_accuracy(), no_labels),
            # Small (classes x classes) integers: kept so that any other figure can be recomputed.
            'confusion_matrix': self.confusion.matrix.tolist(),
        }


def evaluate(backend, dataset_dir: str | Path, frames: int | None = None,
             on_frame: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run ``backend`` (a ``student_trt.backends.Backend``) over an evaluation set and score it.

    Args:
        backend: the loaded model; its ``spec`` gives preprocessing, output size and classes.
        dataset_dir: a folder with rgb/, depth/ and labels/ (``rc_offline.dataset`` layout).
        frames: evaluate this many frames, spread evenly over the set (default: all).
        on_frame: called as ``on_frame(done, total)`` after each frame (progress).

    Raises:
        DatasetError: the folder or one of its files cannot be used (the message names it).
        student_trt.backends.BackendError: the runtime failed.
    """
    chosen = select_frames(dataset_dir, frames)
    pre, post = Preprocessor(backend.spec), Postprocessor(backend.spec)
    result = EvalResult(backend.spec.class_names, dataset=str(dataset_dir))
    for done, frame in enumerate(chosen, 1):
        rgb = read_rgb(frame.paths['rgb'])
        outputs = backend.infer(pre(rgb, 'rgb8'))
        images = post(outputs.depth, outputs.seg_logits)
        result.add(images.depth, images.class_ids, read_depth(frame.paths['depth']),
                   read_labels(frame.paths['labels']))
        if on_frame is not None:
            on_frame(done, len(chosen))
    return result
