"""Scoring what the pipeline published against the synthetic ground truth (pure numpy; no ROS).

Everything is compared on the pipeline's output grid (the student's, e.g. 320x240). Full-resolution
images (ground truth, ToF, confidence) are brought to it with the fusion node's own nearest-neighbour
resampling, so a ToF pixel that fusion used is compared against the same ground-truth pixel here.

Per source, over the pixels that have ground truth:

* ``student``: the student's depth, where finite;
* ``tof``: the ToF where fusion deems it valid (range, and confidence when ``use_confidence`` is not
  false and the frame has one);
* ``fused``: the published fused depth, where finite.

RMSE / AbsRel / delta<1.25 are over the pixels where that source gives a value; coverage is the share of
ground-truth pixels where it does. Also checked, per the fusion rule: where the ToF is valid, the fused
value equals the ToF value exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_fusion.fusion import FusionConfig, resample_nearest, tof_valid
from rc_offline.metrics import ConfusionMatrix, DepthErrors
from rc_perception.depth import to_metres

__all__ = ['FrameOutputs', 'Scores', 'agreement', 'score_frames', 'score_outputs_only']

SOURCES = ('student', 'tof', 'fused')


@dataclass
class FrameOutputs:
    """One frame: ground truth and ToF inputs (full size) and what the pipeline published for it."""

    stem: str
    gt_depth: np.ndarray
    gt_labels: np.ndarray
    tof_mm: np.ndarray
    confidence: np.ndarray | None
    student: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    fused: np.ndarray | None = None
    source: np.ndarray | None = None


@dataclass
class Scores:
    depth: dict[str, DepthErrors] = field(default_factory=lambda: {s: DepthErrors() for s in SOURCES})
    confusion: ConfusionMatrix | None = None
    frames_scored: int = 0
    #: ToF-valid pixels where the fused value differs from the ToF value (must be 0).
    tof_replaced: int = 0
    tof_valid_pixels: int = 0
    #: Pixels published as exactly 0.0 (must be 0: invalid is NaN).
    fused_zeros: int = 0
    #: Pixels whose source-map entry disagrees with where the value came from.
    source_mismatch: int = 0
    #: Per scored frame, the student against the valid ToF (``agreement``), in frame order.
    agreement: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        out = {'frames_scored': self.frames_scored}
        for name, acc in self.depth.items():
            out[f'rmse_{name}'] = acc.rmse
            out[f'absrel_{name}'] = acc.absrel
            out[f'delta1_{name}'] = acc.delta1_ratio
            out[f'coverage_{name}'] = acc.coverage
            out[f'pixels_{name}'] = acc.count
        if self.confusion is not None:
            out['miou'] = self.confusion.miou()
            out['pixel_accuracy'] = self.confusion.pixel_accuracy()
            out['iou_per_class'] = [None if np.isnan(v) else float(v) for v in self.confusion.iou()]
        out['tof_valid_pixels'] = self.tof_valid_pixels
        out['tof_pixels_replaced'] = self.tof_replaced
        out['fused_zero_pixels'] = self.fused_zeros
        out['source_map_mismatches'] = self.source_mismatch
        out['agreement'] = self.agreement
        return out


def score_frames(frames: list[FrameOutputs], config: FusionConfig, use_confidence: bool | str,
                 num_classes: int) -> Scores:
    """Accumulate the scores of every frame for which both the student and the fused depth arrived."""
    scores = Scores(confusion=ConfusionMatrix(num_classes))
    for f in frames:
        if f.student is None or f.fused is None:
            continue
        grid = f.fused.shape
        gt = resample_nearest(f.gt_depth, grid)
        tof_mm = resample_nearest(f.tof_mm, grid)
        conf = resample_nearest(f.confidence, grid) if (use_confidence not in (False, 'false')
                                                        and f.confidence is not None) else None
        valid = tof_valid(tof_mm, '16UC1', config.range_min, config.range_max, conf,
                          config.confidence_threshold)
        tof_m = to_metres(tof_mm, '16UC1')  # the node's conversion: the values fusion must pass on
        tof_pred = np.where(valid, tof_m, np.float32(np.nan))
        scores.depth['student'].add(f.student, gt)
        scores.depth['tof'].add(tof_pred, gt)
        scores.depth['fused'].add(f.fused, gt)
        scores.tof_valid_pixels += int(valid.sum())
        scores.tof_replaced += int(np.sum(f.fused[valid] != tof_m[valid]))
        scores.fused_zeros += int(np.sum(f.fused == 0.0))
        if f.source is not None:
            expected = np.where(valid, 1, np.where(np.isfinite(f.fused), 2, 0))
            scores.source_mismatch += int(np.sum(f.source != expected))
        scores.agreement.append(agreement(f.stem, f.student, tof_m, valid, f.source))
        if f.segmentation is not None:
            labels = resample_nearest(f.gt_labels, f.segmentation.shape)
            scores.confusion.add(f.segmentation, labels)
        scores.frames_scored += 1
    return scores


def agreement(stem: str, student: np.ndarray, tof_m: np.ndarray, valid: np.ndarray,
              source: np.ndarray | None) -> dict:
    """How the student agreed with the valid ToF on one frame, and whether its fill was published: AbsRel
    and delta1 over the pixels where both have a value, their share of the frame (``overlap``), whether any
    pixel could have been filled (ToF invalid, student finite) and whether any was (source map 2)."""
    both = valid & np.isfinite(student)
    s, t = student[both].astype(np.float64), tof_m[both].astype(np.float64)
    ratio = s / t
    could_fill = bool(np.any(~valid & np.isfinite(student)))
    return {'stem': stem, 'overlap': float(both.mean()),
            'absrel': float(np.mean(np.abs(ratio - 1.0))) if s.size else float('nan'),
            'delta1': float(np.mean(np.maximum(ratio, 1.0 / ratio) < 1.25)) if s.size else float('nan'),
            'could_fill': could_fill, 'filled': bool(source is not None and np.any(source == 2))}


def score_outputs_only(outputs: list[dict]) -> dict:
    """What can be said without ground truth (a recording): coverage over all output pixels, per source
    as the published source map tells it, and the consistency checks of the fusion rule.

    Args:
        outputs: per frame, the published arrays 'fused', 'source' and 'student' (any may be missing;
            frames without a fused depth and a source map are not scored).
    """
    counts = dict.fromkeys(('pixels', 'fused', 'tof', 'student', 'zeros', 'mismatches', 'frames'), 0)
    for got in outputs:
        fused, source, student = got.get('fused'), got.get('source'), got.get('student')
        if fused is None or source is None:
            continue
        finite = np.isfinite(fused)
        counts['pixels'] += fused.size
        counts['fused'] += int(finite.sum())
        counts['tof'] += int(np.sum(source == 1))
        counts['student'] += int(np.isfinite(student).sum()) if student is not None else 0
        counts['zeros'] += int(np.sum(fused == 0.0))
        counts['mismatches'] += int(np.sum(finite != (source != 0)))
        counts['frames'] += 1
    nan = float('nan')

    def share(key: str) -> float:
        return counts[key] / counts['pixels'] if counts['pixels'] else nan

    result = {'frames_scored': counts['frames'], 'fused_zero_pixels': counts['zeros'],
              'source_map_mismatches': counts['mismatches'], 'tof_pixels_replaced': None,
              'tof_valid_pixels': counts['tof'], 'miou': nan, 'pixel_accuracy': nan, 'iou_per_class': []}
    for name in SOURCES:
        result.update({f'rmse_{name}': nan, f'absrel_{name}': nan, f'delta1_{name}': nan,
                       f'coverage_{name}': share(name), f'pixels_{name}': counts[name]})
    return result
