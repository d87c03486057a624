"""rc_perception.latency: per-phase timing of a node's frames, checked against a controlled clock."""

import math

import pytest

from rc_perception import latency
from rc_perception.latency import PHASES, LatencyWindow, latency_key


class FakePerf:
    """Stands in for time.perf_counter_ns so that durations are exact."""

    def __init__(self, monkeypatch):
        self.now = 0
        monkeypatch.setattr(latency.time, 'perf_counter_ns', lambda: self.now)


def test_phases_add_up_for_one_frame(monkeypatch):
    perf = FakePerf(monkeypatch)
    clock = {'ns': 1_000_000_000 + 30_000_000}  # received 30 ms after the camera stamp
    window = LatencyWindow(lambda: clock['ns'])
    timer = window.frame(1_000_000_000)
    perf.now += 2_000_000    # 2 ms waiting for the worker
    timer.start()
    perf.now += 15_000_000   # 15 ms of work
    timer.publishing()
    perf.now += 1_000_000    # 1 ms publishing
    timer.done()
    values = window.values()
    expected = {'input age': 30.0, 'wait': 2.0, 'compute': 15.0, 'publish': 1.0, 'output age': 48.0}
    for phase, ms in expected.items():
        assert values[latency_key(phase, 50)] == pytest.approx(ms), phase
        assert values[latency_key(phase, 99)] == pytest.approx(ms), phase


def test_callback_nodes_may_skip_start_and_wait_is_zero(monkeypatch):
    perf = FakePerf(monkeypatch)
    window = LatencyWindow(lambda: 5_000_000)
    timer = window.frame(0)
    perf.now += 4_000_000
    timer.publishing()
    perf.now += 500_000
    timer.done()
    values = window.values()
    assert values['wait p50 (ms)'] == 0.0
    assert values['compute p50 (ms)'] == pytest.approx(4.0)
    assert values['output age p50 (ms)'] == pytest.approx(9.5)


def test_percentiles_over_the_window_and_empty_window_is_nan(monkeypatch):
    perf = FakePerf(monkeypatch)
    window = LatencyWindow(lambda: 0, window=100)
    assert all(math.isnan(v) for v in window.values().values())
    assert set(window.values()) == {latency_key(p, q) for p in PHASES for q in (50, 99)}
    for ms in range(1, 201):  # only the last 100 (101..200 ms of compute) stay
        timer = window.frame(0)
        timer.start()
        perf.now += ms * 1_000_000
        timer.publishing()
        timer.done()
    assert len(window) == 100
    values = window.values()
    assert values['compute p50 (ms)'] == pytest.approx(150.5)
    assert values['compute p99 (ms)'] == pytest.approx(199.01)


class OffsetPerf(FakePerf):
    """A perf counter that does not start at 0 (a sum and a difference of its readings then differ)."""

    def __init__(self, monkeypatch):
        super().__init__(monkeypatch)
        self.now = 7_000_000_000


def one_frame(perf: FakePerf, window: LatencyWindow, wait: int, compute: int, publish: int | None) -> None:
    """Time one frame stamped at 0: ``wait`` ns to start(), ``compute`` ns to publishing() (or, when
    ``publish`` is None, to done() without publishing() at all), then ``publish`` ns to done()."""
    timer = window.frame(0)
    perf.now += wait
    assert timer.start() is timer, 'start() returns the timer, for chaining'
    perf.now += compute
    if publish is not None:
        timer.publishing()
        perf.now += publish
    timer.done()


def test_phases_are_differences_of_the_timer_readings(monkeypatch):
    window = LatencyWindow(lambda: 12_000_000, window=5)
    one_frame(OffsetPerf(monkeypatch), window, wait=0, compute=3_000_000, publish=2_000_000)
    values = window.values()
    assert values == {'input age p50 (ms)': 12.0, 'input age p99 (ms)': 12.0, 'wait p50 (ms)': 0.0,
                      'wait p99 (ms)': 0.0, 'compute p50 (ms)': 3.0, 'compute p99 (ms)': 3.0,
                      'publish p50 (ms)': 2.0, 'publish p99 (ms)': 2.0, 'output age p50 (ms)': 17.0,
                      'output age p99 (ms)': 17.0}, values


def test_without_publishing_the_whole_time_after_start_is_compute(monkeypatch):
    window = LatencyWindow(lambda: 0)
    one_frame(OffsetPerf(monkeypatch), window, wait=1_000_000, compute=5_000_000, publish=None)
    values = window.values()
    got = tuple(values[f'{phase} p50 (ms)'] for phase in ('wait', 'compute', 'publish'))
    assert got == (1.0, 5.0, 0.0), got
    assert values['output age p50 (ms)'] == 6.0, 'output age = input age (0) + receipt to done'


def test_the_default_window_keeps_the_last_300_frames(monkeypatch):
    perf = OffsetPerf(monkeypatch)
    window = LatencyWindow(lambda: 0)
    for ms in range(1, 302):  # 301 frames: the first (1 ms of compute) drops out
        one_frame(perf, window, wait=0, compute=ms * 1_000_000, publish=None)
    assert len(window) == 300
    assert window.values()['compute p50 (ms)'] == 151.5, 'median of 2..301'
