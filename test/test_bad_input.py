"""Dropped-input warnings: one line per (topic, kind of problem) per period, every drop counted.

BadInput is driven directly with a clock the test sets; then once end to end, on the log output of a real
node process fed bad messages over DDS. The documented line (node_support.BadInput):
``dropped <what> on <topic>: <reason> [N dropped on this topic so far]``.
"""

import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

from rc_perception import node_support
from rc_perception.node_support import BadInput, RateMeter


class Recorder:
    """The logger BadInput writes to: keeps each warning line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def clock(monkeypatch):
    """node_support's monotonic clock, set by the test (seconds)."""
    state = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(node_support, 'time', SimpleNamespace(monotonic=lambda: state.now))
    return state


@pytest.fixture
def log():
    return Recorder()


def bad_input(log: Recorder, period: float = 5.0) -> BadInput:
    return BadInput(SimpleNamespace(get_logger=lambda: log), period=period)


def test_the_first_drop_logs_the_documented_line(clock, log):
    bad = bad_input(log)
    bad.report('/cam/depth', "unsupported encoding 'rgb8' (expected 16UC1 or 32FC1)", 'depth image')
    assert log.lines == ["dropped depth image on /cam/depth: unsupported encoding 'rgb8' (expected 16UC1 or "
                         "32FC1) [1 dropped on this topic so far]"]
    assert (bad.counts['/cam/depth'], bad.total) == (1, 1)
    assert bad.last_reason == "/cam/depth: unsupported encoding 'rgb8' (expected 16UC1 or 32FC1)"


def test_repeats_within_the_period_are_counted_not_logged_and_one_after_it_is(clock, log):
    bad = bad_input(log, period=5.0)
    reason = 'image data is 10 bytes, expected 12 (step 4 x height 3)'
    for dt in (0.0, 1.0, 4.999):
        clock.now = 1000.0 + dt
        bad.report('/img', reason, 'image')
    assert len(log.lines) == 1, f'expected 1 line within the period, got {log.lines}'
    assert bad.counts['/img'] == 3 and bad.total == 3, 'every drop counts, logged or not'
    clock.now = 1005.0  # exactly one period after the logged line
    bad.report('/img', reason, 'image')
    assert len(log.lines) == 2, f'a drop one period later must log again, got {log.lines}'
    assert log.lines[1] == f'dropped image on /img: {reason} [4 dropped on this topic so far]'
    clock.now = 1009.9
    bad.report('/img', reason, 'image')
    assert len(log.lines) == 2, 'the period restarts at the last logged line'
    clock.now = 1010.0
    bad.report('/img', reason, 'image')
    assert log.lines[-1].endswith('[6 dropped on this topic so far]') and len(log.lines) == 3


def test_each_topic_and_each_kind_of_problem_has_its_own_period(clock, log):
    bad = bad_input(log)
    bad.report('/a', ValueError('truncated: 3 bytes'))
    bad.report('/a', ValueError('another value problem'))   # same kind (ValueError): quiet
    bad.report('/a', TypeError('not an image'))              # another kind: logged
    bad.report('/b', ValueError('truncated: 3 bytes'))       # another topic: logged
    bad.report('/a', 'no CameraInfo received yet: waiting')   # a text reason's kind is before the colon
    bad.report('/a', 'no CameraInfo received yet: still')     # same kind: quiet
    assert log.lines == [
        'dropped message on /a: truncated: 3 bytes [1 dropped on this topic so far]',
        'dropped message on /a: not an image [3 dropped on this topic so far]',
        'dropped message on /b: truncated: 3 bytes [1 dropped on this topic so far]',
        'dropped message on /a: no CameraInfo received yet: waiting [4 dropped on this topic so far]',
    ]
    assert dict(bad.counts) == {'/a': 5, '/b': 1} and bad.total == 6
    assert bad.last_reason == '/a: no CameraInfo received yet: still'
    assert list(bad.recent)[-3:] == ['/b: truncated: 3 bytes', '/a: no CameraInfo received yet: waiting',
                                     '/a: no CameraInfo received yet: still']


def test_defaults_a_five_second_period_and_nothing_dropped_yet(clock, log):
    bad = BadInput(SimpleNamespace(get_logger=lambda: log))
    assert (bad.total, bad.last_reason, list(bad.recent)) == (0, '', [])
    bad.report('/t', 'broken: yes')
    clock.now += 4.9
    bad.report('/t', 'broken: yes')
    clock.now += 0.1  # 5.0 s after the first line
    bad.report('/t', 'broken: yes')
    assert [line[-32:] for line in log.lines] == ['[1 dropped on this topic so far]',
                                                  '[3 dropped on this topic so far]']


def test_recent_reasons_keep_the_last_32(clock, log):
    bad = bad_input(log)
    for i in range(40):
        bad.report('/t', f'problem {i}')
    assert len(bad.recent) == 32 and bad.recent[0] == '/t: problem 8' and bad.recent[-1] == '/t: problem 39'
    assert bad.total == 40 and len(log.lines) == 40, 'distinct reasons without a colon are distinct kinds'


def test_rate_meter_counts_and_rates_over_its_window():
    meter = RateMeter(window=5.0)
    assert meter.rate(0.0) == 0.0 and meter.count == 0
    meter.tick(10.0)
    assert meter.rate(10.0) == 0.0, 'one event is no rate'
    meter.tick(10.5)
    meter.tick(11.0)
    assert meter.rate(11.0) == pytest.approx(2.0), '3 events over 1 s: 2 intervals per second'
    assert meter.rate(12.0) == pytest.approx(1.0), 'silence since stretches the span: 2 intervals in 2 s'
    assert meter.rate(15.0) == pytest.approx(2 / 5.0), 'the window still holds all three'
    assert meter.rate(15.2) == pytest.approx(1 / 4.7), '10.0 left the window (5.2 s old)'
    assert meter.rate(100.0) == 0.0 and meter.count == 3, 'count is the total, the rate the window'
    meter.tick(200.0)
    meter.tick(200.0)
    assert meter.rate(200.0) == 0.0, 'two events at one instant have no span'


def test_rate_meter_default_window_is_five_seconds_and_its_edge_is_kept():
    meter = RateMeter()
    meter.tick(0.0)
    meter.tick(5.0)  # exactly one window after the first: still inside
    assert meter.rate(5.0) == pytest.approx(1 / 5.0)
    meter.tick(5.5)
    assert meter.rate(5.5) == pytest.approx(1 / 0.5), '0.0 is 5.5 s old: out of the window'
    edge = RateMeter(window=1.0)
    edge.tick(0.0)
    edge.tick(1.0)
    assert edge.rate(1.0) == pytest.approx(1.0), 'an event exactly one window old still counts'


def test_rate_meter_asked_for_an_earlier_time_than_its_last_tick():
    """Another thread may tick just after a reader took its 'now': the span is then the ticks' own."""
    meter = RateMeter(window=10.0)
    for t in (0.0, 1.0, 2.0):
        meter.tick(t)
    assert meter.rate(1.5) == pytest.approx(2 / 2.0), '3 events spanning 2 s'


def test_rate_meter_evicts_on_tick():
    meter = RateMeter(window=1.0)
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):
        meter.tick(t)
    assert meter.rate(2.0) == pytest.approx(2.0), 'events 1.0, 1.5, 2.0 in the last second'
    assert meter.count == 5


# ---------------------------------------------------------------------------------- end to end, DDS

DROP_LINE = re.compile(r'\[WARN\] \[[\d.]+\] \[depth_fusion_node\]: dropped student depth on /student/depth: '
                       r"unsupported encoding 'rgb8' \(expected .*32FC1.*\) "
                       r'\[(\d+) dropped on this topic so far\]')


def fusion_dropped(arrays) -> int:
    """The largest 'dropped' count depth_fusion_node reported on /diagnostics so far (0 if none)."""
    counts = [int(kv.value) for array in arrays for status in array.status
              if status.name.startswith('depth_fusion_node') for kv in status.values if kv.key == 'dropped']
    return max(counts, default=0)


@pytest.mark.dds
def test_a_node_logs_the_first_bad_message_once_and_keeps_counting(ros_graph):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from rc_perception import codecs, qos

    from ros_harness import node_process, stop_process

    diagnostics = ros_graph.collect(DiagnosticArray, '/diagnostics', qos.diagnostics())
    proc = node_process('depth_fusion.node', ['-p', 'diagnostics_period:=0.1'])
    pub = ros_graph.publisher(Image, 'student/depth')
    bad = codecs.array_to_image(np.zeros((4, 6, 3), np.uint8), 'rgb8')
    try:
        ros_graph.wait_for_subscribers(pub, timeout=30.0)
        first = time.monotonic()
        while fusion_dropped(diagnostics.messages) < 5:  # best effort: send until five have arrived
            assert time.monotonic() - first < 30.0, \
                f'only {fusion_dropped(diagnostics.messages)} bad messages counted in 30 s'
            pub.publish(bad)
            diagnostics.wait_for(len(diagnostics.messages) + 1, timeout=5.0)
        elapsed = time.monotonic() - first
        counted = fusion_dropped(diagnostics.messages)
    finally:
        code, out = stop_process(proc)
    assert code == 0, out
    lines = [m for m in map(DROP_LINE.search, out.splitlines()) if m]
    assert lines, f'expected a line matching {DROP_LINE.pattern}; output:\n{out}'
    assert lines[0].group(1) == '1', f'the first bad message is logged: {lines[0].group(0)}'
    allowed = 1 + int(elapsed // 5.0)  # one line per 5 s period of BadInput
    assert len(lines) <= allowed, (f'{counted} drops in {elapsed:.1f} s logged {len(lines)} lines, '
                                   f'expected at most {allowed}:\n{out}')
