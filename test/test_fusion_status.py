"""depth_fusion.status: what the fusion node logs and reports, from constructed states (no graph)."""

from types import SimpleNamespace

import numpy as np
import pytest

from depth_fusion.fusion import Fuser, FusionConfig
from depth_fusion.pairing import Match, MatchStatus, StreamState, StreamWatch, ToFPairer
from depth_fusion.status import FusionState, PairingLog, confidence_expected, report

P = SimpleNamespace(mode='gated', use_confidence='auto', max_time_diff=0.05, require_tof=False,
                    publish_tof_only=False)
TOPICS = ('/camera/depth', '/camera/depth/confidence')


@pytest.mark.parametrize('setting, state, publisher, expected', [
    ('true', StreamState.SILENT, False, True), ('false', StreamState.OK, True, False),
    ('auto', StreamState.OK, False, True), ('auto', StreamState.SILENT, True, False),
    ('auto', StreamState.WAITING, True, True), ('auto', StreamState.WAITING, False, False)])
def test_confidence_expected_truth_table(setting, state, publisher, expected):
    assert confidence_expected(setting, state, publisher) is expected


def test_pairing_log_once_per_change_and_throttled():
    log, watch = PairingLog(period=5.0), StreamWatch(1.0, 0.0)
    matched, far = Match(MatchStatus.MATCHED), Match(MatchStatus.NO_MATCH, dt=0.2)
    assert log.line(None, matched, 0.0, watch, P, TOPICS) is None, 'starting matched: nothing to say'
    line = log.line(matched, far, 1.0, watch, P, TOPICS)
    assert line == ('no ToF within max_time_diff (0.05 s) of the student depth (nearest 200 ms): publishing '
                    'student-only depth'), line
    assert log.line(far, far, 2.0, watch, P, TOPICS) is None, 'no change'
    assert log.line(far, matched, 2.0, watch, P, TOPICS) == 'ToF matched again: fusing'
    assert log.line(matched, far, 5.9, watch, P, TOPICS) is None, 'the same change within 5 s'
    assert log.line(matched, far, 6.0, watch, P, TOPICS) is not None, 'the same change 5 s later'


def state(now=0.0, **kw):
    s = FusionState(ToFPairer(0.05, timeout=1.0, start=now), StreamWatch(1.0, now), StreamWatch(1.0, now))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def fused(student, tof, **cfg):
    return Fuser(FusionConfig(range_max=5.0, fit_sample_size=0, accuracy_smoothing=0.0, **cfg)).fuse(
        student, tof, stamp_ns=3_000_000_000)


def test_report_levels_and_messages():
    tof = np.full((4, 4), 2.0, np.float32)
    tof[:, 2:] = np.nan
    good = fused(np.full((4, 4), 2.0, np.float32), tof)
    s = state()
    assert report(s, P, 0.5, TOPICS, {})[:2] == ('ok', 'waiting for student depth')
    s.pairer.add_depth(0, 'tof', now=0.5)
    s.student_watch.tick(0.5)
    s.last_match, s.last_result, s.last_stamp = Match(MatchStatus.MATCHED, dt=0.0), good, 3_000_000_000
    level, message, values = report(s, P, 0.6, TOPICS, {'dropped': 0})
    assert (level, message) == ('ok', 'fusing ToF and student depth (mode gated)')
    assert (values['student fill'], values['student delta1'], values['overlap (%)']) == ('on', 1.0, 50.0)
    assert values['ToF share of last fused frame (%)'] == 50.0
    assert values['confidence'] == 'auto: validity alone'
    bad = fused(np.full((4, 4), 9.0, np.float32), tof)
    s.last_result = bad
    level, message, values = report(s, P, 0.6, TOPICS, {})
    assert level == 'warn' and message.startswith('student fill withheld for 0.0 s: student disagrees'), \
        message
    assert values['student fill'] == 'withheld' and values['student delta1'] == 0.0
    s.last_match = Match(MatchStatus.NO_CONFIDENCE, dt=0.01)
    assert report(s, P, 0.6, TOPICS, {})[1] == ('no confidence image with the ToF stamp on '
                                                '/camera/depth/confidence: publishing student-only depth')
    level, message, values = report(s, P, 1.6, TOPICS, {})  # nothing for 1.1 s
    assert message == 'no student depth for 1.1 s: publishing nothing' and values['ToF state'].startswith(
        'silent for 1.1 s'), (message, values['ToF state'])
    s.student_watch.tick(1.6)
    assert report(s, SimpleNamespace(**{**vars(P), 'require_tof': True}), 1.6, TOPICS, {})[1] == \
        'ToF silent for 1.1 s on /camera/depth: skipping student frames (require_tof)'


def test_startup_line_names_topics_mode_and_calibration_source():
    from types import SimpleNamespace

    from depth_fusion.status import startup_line
    p = SimpleNamespace(mode='affine', use_confidence='auto')
    cfg = SimpleNamespace(alpha=1.25, beta=-0.1)
    line = startup_line(['/a', '/b'], '/out', p, cfg, '')
    assert line == ('fusing /a, /b -> /out (mode affine, alpha 1.25, beta -0.1 from parameters, '
                    'use_confidence auto)'), line
    assert 'from /cal.yaml' in startup_line(['/a'], '/out', p, cfg, '/cal.yaml')
