"""Metrics against hand-computed values."""

import numpy as np
import pytest

from rc_offline.metrics import ConfusionMatrix, DepthErrors, depth_errors


def test_depth_errors_by_hand():
    gt = np.array([1.0, 2.0, 4.0, np.nan, 3.0])
    pred = np.array([1.1, 2.0, 2.0, 5.0, np.nan])
    r = depth_errors(pred, gt)
    assert r['pixels'] == 3
    assert r['rmse'] == pytest.approx(np.sqrt((0.01 + 0 + 4) / 3))
    assert r['absrel'] == pytest.approx((0.1 + 0 + 0.5) / 3)
    assert r['delta1'] == pytest.approx(2 / 3)  # 4 vs 2 is off by 2x
    assert r['coverage'] == pytest.approx(3 / 4)  # 4 ground-truth pixels, 3 predicted


def test_depth_errors_accumulate_over_pixels_not_frames():
    acc = DepthErrors()
    acc.add(np.array([2.0]), np.array([1.0]))
    acc.add(np.ones(3), np.ones(3))
    assert acc.rmse == pytest.approx(np.sqrt(1 / 4))


def test_miou_of_a_known_confusion():
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 255])
    pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
    cm = ConfusionMatrix(3).add(pred, gt)
    # class 0: tp 3, fp 1 (gt 2 -> 0), fn 1 -> 3/5; class 1: tp 2, fp 1, fn 1 -> 2/4;
    # class 2: tp 1, fp 1, fn 1 -> 1/3
    np.testing.assert_allclose(cm.iou(), [3 / 5, 2 / 4, 1 / 3])
    assert cm.miou() == pytest.approx((3 / 5 + 1 / 2 + 1 / 3) / 3)
    assert cm.pixel_accuracy() == pytest.approx(6 / 9)


def test_absent_class_is_not_averaged_and_out_of_range_prediction_is_a_miss():
    cm = ConfusionMatrix(4).add(np.array([0, 9]), np.array([0, 1]))
    iou = cm.iou()
    assert iou[0] == 1.0 and iou[1] == 0.0 and np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.miou() == pytest.approx(0.5)
