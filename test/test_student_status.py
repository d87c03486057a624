"""student_trt_node's bookkeeping and /diagnostics wording, without ROS: the newest-frame slot, the counts,
the failure throttle and the level truth table."""

import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from student_trt.geometry import frame_geometry
from student_trt.metadata import ModelSpec
from student_trt.status import FAILURE_WINDOW, FrameBook, facts, report

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def test_the_newest_frame_replaces_an_unprocessed_one_and_counts_it_stale():
    book = FrameBook()
    assert book.put('a') == 0, 'nothing was waiting'
    assert book.put('b') == 1 and book.put('c') == 2, 'each replaced frame is the next stale drop'
    assert book.snapshot().pending == 1
    assert book.take() == 'c', 'the worker gets the newest frame'
    assert book.snapshot().pending == 1, 'a frame in hand is pending until idle()'
    book.processed(12.0)
    book.idle()
    snap = book.snapshot()
    assert (snap.received, snap.processed, snap.dropped_stale, snap.pending) == (3, 1, 2, 0), snap
    assert book.put('d') == 0, 'the slot was empty again'


def test_take_waits_for_a_frame_and_returns_none_once_stopped():
    book = FrameBook()
    taken = []

    def worker() -> None:
        taken.append(book.take())

    first = threading.Thread(target=worker)
    first.start()  # blocks in take() until a frame comes
    book.put(1)
    first.join(timeout=5)
    assert taken == [1] and not first.is_alive(), f'the waiting worker must get the frame put, got {taken}'
    book.idle()
    second = threading.Thread(target=worker)
    second.start()
    book.stop()
    second.join(timeout=5)
    assert taken == [1, None] and not second.is_alive(), f'take() must return None once stopped: {taken}'
    book.put(2)
    assert book.take() is None, 'after stop() a frame in the slot is not handed out'


def test_the_same_failure_is_logged_once_per_window():
    book = FrameBook()
    assert book.failed('BackendError: boom', now=100.0), 'the first failure is logged'
    assert not book.failed('BackendError: boom', now=100.0 + FAILURE_WINDOW - 0.01), 'a repeat inside'
    assert book.failed('BackendError: boom', now=100.0 + 2 * FAILURE_WINDOW), 'a repeat after the window'
    assert book.failed('ValueError: other', now=100.0 + 2 * FAILURE_WINDOW + 0.1), 'a different failure'
    snap = book.snapshot(now=100.0 + 2 * FAILURE_WINDOW + 0.2)
    assert snap.failed == 4 and snap.failing and snap.last_failure == 'ValueError: other', snap
    assert not book.snapshot(now=100.0 + 4 * FAILURE_WINDOW).failing, 'failing ends after the window'


def test_a_failure_keeps_the_node_failing_for_five_seconds():
    book = FrameBook()
    book.failed('BackendError: boom', now=100.0)
    assert book.snapshot(now=104.99).failing, 'inside the 5 s window'
    assert not book.snapshot(now=105.0).failing, 'the window ends 5 s after the failure'


def test_facts_name_the_backend_and_the_grid():
    backend = SimpleNamespace(name='onnxruntime', description='onnxruntime 1.31.1', selection_reason='',
                              model_path=Path('/models/student_fp32.onnx'), precision='fp32',
                              spec=ModelSpec(height=240, width=320))
    before = facts(backend, 'model', None)
    assert before == {'backend': 'onnxruntime', 'backend detail': 'onnxruntime 1.31.1', 'backend choice': '-',
                      'model': '/models/student_fp32.onnx', 'input size': '320x240', 'precision': 'fp32',
                      'output size': 'model', 'output grid': '-'}, before
    backend.selection_reason = 'auto: an ONNX model'
    after = facts(backend, 'input', frame_geometry((360, 640), (240, 320), 'input'))
    assert (after['backend choice'], after['output size'], after['output grid']) == \
        ('auto: an ONNX model', 'input', '640x360 from 640x360 camera images'), after


def test_inference_percentiles_and_shutdown_drops():
    book = FrameBook()
    assert math.isnan(book.snapshot().inference_p50), 'no inference yet: NaN'
    for ms in range(1, 101):  # 1 .. 100 ms
        book.processed(float(ms))
    book.dropped_at_shutdown()
    snap = book.snapshot()
    assert snap.inference_p50 == pytest.approx(50.5) and snap.inference_p99 == pytest.approx(99.01), snap
    assert (snap.processed, snap.dropped_at_shutdown) == (100, 1)


def _report(**changes):
    book = FrameBook()
    for _ in range(changes.pop('received', 0)):
        book.put('frame')
        book.take()
        book.idle()
    for _ in range(changes.pop('processed', 0)):
        book.processed(5.0)
    for text in changes.pop('failures', ()):
        book.failed(text)
    args = {'dropped_bad': 0, 'last_drop': '', 'topic': '/camera/rgb', 'facts': {'backend': 'onnxruntime'},
            'rates': (15.0, 14.5), 'latency': {'wait p50 (ms)': 1.5}, **changes}
    return report(book.snapshot(), **args)


@pytest.mark.parametrize('state, level, message', [
    ({}, OK, 'waiting for images on /camera/rgb'),
    ({'received': 3, 'processed': 3}, OK, 'publishing'),
    ({'received': 2, 'dropped_bad': 2, 'last_drop': 'x'}, WARN,
     'every image so far was dropped (see last drop reason)'),
    ({'received': 3, 'processed': 2, 'dropped_bad': 1}, OK, 'publishing'),
    ({'received': 3, 'processed': 2, 'failures': ['BackendError: out of memory']}, ERROR,
     'inference failing: BackendError: out of memory'),
    ({'failures': ['BackendError: x']}, ERROR, 'inference failing: BackendError: x'),
])
def test_level_and_message_truth_table(state, level, message):
    got_level, got_message, _ = _report(**state)
    assert (got_level, got_message) == (level, message), f'{state}: got {got_level!r} {got_message!r}'


def test_values_show_facts_counts_rates_and_latency():
    _, _, values = _report(received=4, processed=3, dropped_bad=1, last_drop='/camera/rgb: bad step')
    assert values['backend'] == 'onnxruntime' and values['wait p50 (ms)'] == 1.5
    assert (values['frames in'], values['frames out'], values['dropped bad'], values['dropped stale']) == \
        (4, 3, 1, 0), values
    assert (values['input rate (Hz)'], values['output rate (Hz)']) == (15.0, 14.5)
    assert values['inference p50 (ms)'] == 5.0 and values['last drop reason'] == '/camera/rgb: bad step'
    assert values['last failure'] == '-' and values['inference failures'] == 0
