"""depth_fusion.pairing at its edges: defaults, the silence boundary, configure and clear.

Complements test_fusion_pairing.py with the cases a mutation run showed unguarded (tools/mutation.py).
"""

from depth_fusion.pairing import MatchStatus, StampedBuffer, StreamState, StreamWatch, ToFPairer

MS = 1_000_000  # nanoseconds


def test_buffer_keeps_ten_by_default():
    buf = StampedBuffer()
    for t in range(11):
        buf.add(t, t)
    assert len(buf) == 10 and [s for s, _ in buf] == list(range(1, 11)), 'the oldest of 11 is evicted'


def test_a_stream_that_never_delivered_is_waiting_up_to_and_at_its_timeout():
    watch = StreamWatch(timeout=0.5, start=10.0)
    assert watch.state(10.5) is StreamState.WAITING, 'exactly the timeout after start: not yet silent'
    assert watch.state(10.5000001) is StreamState.SILENT
    assert watch.silent_for(10.25) == 0.25 and watch.count == 0


def test_pairer_defaults_ten_frames_one_second_from_zero_without_confidence():
    p = ToFPairer(max_time_diff=0.01)
    assert p.match(0, now=1.0).status is MatchStatus.WAITING, 'timeout 1 s from start 0: at 1.0 still waiting'
    assert p.match(0, now=1.01).status is MatchStatus.SILENT
    for t in range(11):
        p.add_depth(t * 100 * MS, f'tof{t}', now=2.0)
        p.add_confidence(t * 100 * MS, f'conf{t}')
    assert len(p.depth) == 10 and len(p.confidence) == 10 and p.depth.exact(0) is None
    m = p.match(500 * MS, now=2.0)
    assert m.matched and m.confidence is None, 'confidence is not used by default'


def test_configure_applies_every_setting():
    p = ToFPairer(max_time_diff=0.0, capacity=4, use_confidence=False, timeout=1.0, start=0.0)
    for t in range(4):
        p.add_depth(t * 100 * MS, t, now=0.0)
        p.add_confidence(t * 100 * MS, f'c{t}')
    assert not p.match(340 * MS, now=0.0).matched
    p.configure(max_time_diff=0.05, capacity=2, use_confidence=True, timeout=3.0)
    m = p.match(340 * MS, now=0.0)
    assert (m.status, m.tof, m.confidence) == (MatchStatus.MATCHED, 3, 'c3'), m
    assert len(p.depth) == 2 and len(p.confidence) == 2, 'both buffers shrink'
    p.depth.add(330 * MS, 'incomplete')  # a depth frame whose confidence has not come
    assert p.match(330 * MS, now=0.0).tof == 3, 'use_confidence now set: the complete frame is chosen'
    assert p.watch.state(2.9) is StreamState.OK and p.watch.state(3.01) is StreamState.SILENT


def test_clear_empties_both_buffers():
    p = ToFPairer(max_time_diff=0.05, use_confidence=True)
    p.add_depth(0, 'd', now=0.0)
    p.add_confidence(0, 'c')
    p.clear()
    assert len(p.depth) == 0 and len(p.confidence) == 0
    p.add_depth(0, 'd2', now=0.0)
    assert p.match(0, now=0.0).status is MatchStatus.NO_CONFIDENCE, 'the old confidence image is gone'
