"""depth_fusion.trust: the live accuracy figures and the trust gate, on hand-made numbers."""

import math

import numpy as np
import pytest

from depth_fusion.fusion import SOURCE_NONE, SOURCE_STUDENT, SOURCE_TOF, Fuser, FusionConfig
from depth_fusion.trust import Accuracy, TrustGate, measure_accuracy

S = 1_000_000_000  # ns


def test_accuracy_by_hand():
    d = np.array([1.0, 2.0, 2.4, 5.0])
    t = np.array([1.0, 1.6, 2.0, 2.0])
    acc = measure_accuracy(d, t, total=8)
    # |d - t| / t: 0, 0.25, 0.2, 1.5; ratios max(d/t, t/d): 1, 1.25 (not < 1.25), 1.2, 2.5
    assert acc.absrel == pytest.approx((0 + 0.25 + 0.2 + 1.5) / 4)
    assert acc.delta1 == pytest.approx(2 / 4)
    assert (acc.overlap, acc.pixels) == (0.5, 4)
    empty = measure_accuracy(np.empty(0), np.empty(0), total=8)
    assert math.isnan(empty.absrel) and math.isnan(empty.delta1) and (empty.overlap, empty.pixels) == (0.0, 0)


def acc(delta1, overlap=0.5, pixels=100):
    return Accuracy(0.1, delta1, overlap, pixels)


def gate(**kw):
    args = dict(min_delta1=0.7, hysteresis=0.1, min_overlap=0.05, when_blind='last', smoothing=0.0)
    return TrustGate(**{**args, **kw})


def test_gate_withholds_below_the_threshold_and_returns_above_it_plus_hysteresis():
    g = gate(min_delta1=0.5, hysteresis=0.25)  # exact binary fractions: 0.75 is the return threshold
    steps = [(0.9, True), (0.5, True), (0.4999, False), (0.6, False), (0.7499, False), (0.75, True),
             (0.5, True), (0.49, False)]
    for k, (d1, expected) in enumerate(steps):
        v = g.update(acc(d1), k * S)
        assert v.fill is expected and v.judged, f'frame {k}: delta1 {d1}: expected fill {expected}, got {v}'
    assert v.since_ns == 7 * S and v.held_for(9 * S) == pytest.approx(2.0)
    assert 'disagrees' in v.reason and '0.49' in v.reason and 'returns at 0.75' in v.reason, v.reason


def test_gate_smooths_over_frames():
    g = gate(smoothing=0.5)
    assert g.update(acc(0.9), 0).smoothed.delta1 == pytest.approx(0.9), 'the first frame starts the average'
    v = g.update(acc(0.5), 1)
    assert v.smoothed.delta1 == pytest.approx(0.7) and v.fill, '0.5 * 0.9 + 0.5 * 0.5 = 0.7: not below'
    v = g.update(acc(0.5), 2)
    assert v.smoothed.delta1 == pytest.approx(0.6) and not v.fill


@pytest.mark.parametrize('policy, before, expected', [
    ('trust', False, True), ('withhold', True, False), ('last', True, True), ('last', False, False)])
def test_blind_frames_follow_the_policy(policy, before, expected):
    g = gate(when_blind=policy)
    g.update(acc(0.95 if before else 0.1), 0)
    for blind in (acc(0.0, overlap=0.049), acc(0.0, overlap=0.5, pixels=0), None):
        v = g.update(blind, S)
        assert v.fill is expected and not v.judged, f'{policy} after fill={before}: {v}'
        assert 'too little overlap' in v.reason and policy in v.reason, v.reason
    assert g.update(acc(0.1, overlap=0.05), 2 * S).judged, 'overlap exactly at the minimum is judged'
    assert v.smoothed.delta1 == (0.95 if before else 0.1), 'blind frames do not move the average'


def test_last_policy_fills_before_any_verdict_and_gate_off():
    assert gate().update(None, 0).fill, 'last, before any verdict: fill'
    v = gate(min_delta1=0.0).update(acc(0.0), 0)
    assert v.fill and 'gate off' in v.reason


def test_a_fuser_withholds_the_fill_of_a_disagreeing_student_and_gives_it_back():
    tof = np.full((20, 20), 2.0, np.float32)
    tof[:, 10:] = np.nan  # the right half is a hole the student fills
    good = np.full((20, 20), 2.1, np.float32)
    bad = np.full((20, 20), 4.0, np.float32)
    cfg = FusionConfig(mode='gated', range_max=5.0, min_student_delta1=0.7, trust_hysteresis=0.1,
                       accuracy_smoothing=0.0, fit_sample_size=0)
    fuser = Fuser(cfg)
    res = fuser.fuse(good, tof, stamp_ns=0)
    assert res.accuracy == Accuracy(pytest.approx(0.05), 1.0, 0.5, 200), res.accuracy
    assert np.all(res.source[:, 10:] == SOURCE_STUDENT)
    res = fuser.fuse(bad, tof, stamp_ns=S)
    assert res.accuracy.delta1 == 0.0 and not res.verdict.fill
    assert np.all(res.source[:, 10:] == SOURCE_NONE) and np.all(np.isnan(res.depth[:, 10:]))
    assert np.all(res.source[:, :10] == SOURCE_TOF) and np.all(res.depth[:, :10] == 2.0), 'ToF untouched'
    res = fuser.fuse(good, tof, stamp_ns=2 * S)
    assert res.verdict.fill and np.all(res.depth[:, 10:] == np.float32(2.1))
