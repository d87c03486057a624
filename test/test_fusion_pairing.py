"""depth_fusion.pairing on constructed stamps and arrival times (no graph)."""

import pytest

from depth_fusion.pairing import (
    Match,
    MatchStatus,
    StampedBuffer,
    StreamState,
    StreamWatch,
    StudentHold,
    ToFPairer,
    stamp_ns,
)

MS = 1_000_000  # nanoseconds


def test_stamp_ns():
    assert stamp_ns(0, 0) == 0
    assert stamp_ns(12, 345) == 12_000_000_345
    assert stamp_ns(1_700_000_000, 999_999_999) == 1_700_000_000_999_999_999


def test_nearest_within_tolerance_and_ties():
    buf = StampedBuffer(5)
    for t in (100, 200, 300):
        buf.add(t * MS, f'tof{t}')
    assert buf.nearest(210 * MS) == (200 * MS, 'tof200')
    assert buf.nearest(290 * MS) == (300 * MS, 'tof300')
    assert buf.nearest(10 * MS) == (100 * MS, 'tof100'), 'before the oldest'
    assert buf.nearest(900 * MS) == (300 * MS, 'tof300'), 'after the newest'
    assert buf.nearest(250 * MS) == (200 * MS, 'tof200'), 'a tie goes to the earlier stamp'
    assert buf.nearest(250 * MS, max_diff=50 * MS) == (200 * MS, 'tof200'), 'the tolerance is inclusive'
    assert buf.nearest(250 * MS, max_diff=50 * MS - 1) is None
    assert StampedBuffer().nearest(0) is None


def test_capacity_evicts_oldest_arrival_and_same_stamp_replaces():
    buf = StampedBuffer(3)
    for t in (300, 100, 200):  # arrival order differs from stamp order
        buf.add(t, t)
    buf.add(400, 400)  # evicts 300, the oldest arrival
    assert [s for s, _ in buf] == [100, 200, 400]
    buf.add(100, 'resent')  # replaces, and counts as the newest arrival
    buf.add(500, 500)  # evicts 200
    assert [(s, v) for s, v in buf] == [(100, 'resent'), (400, 400), (500, 500)]
    assert len(buf) == 3 and buf.newest_stamp() == 500
    buf.resize(1)
    assert [s for s, _ in buf] == [500]
    with pytest.raises(ValueError):
        StampedBuffer(0)


def test_exact_lookup():
    buf = StampedBuffer(4)
    buf.add(5, 'a')
    assert buf.exact(5) == 'a' and buf.exact(6) is None


def test_stream_watch_states():
    watch = StreamWatch(timeout=1.0, start=10.0)
    assert watch.state(10.5) is StreamState.WAITING
    assert watch.state(11.01) is StreamState.SILENT, 'never delivered and the timeout has passed'
    watch.tick(11.5)
    assert watch.state(12.0) is StreamState.OK and watch.count == 1
    assert watch.state(12.5) is StreamState.OK, 'exactly the timeout is not yet silent'
    assert watch.state(12.51) is StreamState.SILENT and watch.silent_for(12.51) == pytest.approx(1.01)
    watch.tick(13.0)
    assert watch.state(13.1) is StreamState.OK, 'the stream came back'


def test_pairer_matches_nearest_within_max_time_diff():
    p = ToFPairer(max_time_diff=0.02, capacity=5, timeout=1.0, start=0.0)
    for i, t in enumerate((1000, 1033, 1066)):
        p.add_depth(t * MS, f'tof{t}', now=0.1 * i)
    m = p.match(1040 * MS, now=0.3)
    assert m == Match(MatchStatus.MATCHED, 'tof1033', None, 1033 * MS, pytest.approx(0.007)), m
    assert m.matched
    m = p.match(1100 * MS, now=0.3)
    assert m.status is MatchStatus.NO_MATCH and not m.matched
    assert m.tof is None and m.tof_stamp == 1066 * MS and m.dt == pytest.approx(0.034), m


def test_pairer_distinguishes_waiting_silent_and_no_match():
    p = ToFPairer(max_time_diff=0.02, timeout=0.5, start=100.0)
    assert p.match(0, now=100.2).status is MatchStatus.WAITING
    assert p.match(0, now=100.6).status is MatchStatus.SILENT, 'no ToF ever, past the timeout'
    p.add_depth(5_000 * MS, 'old', now=101.0)
    assert p.match(9_000 * MS, now=101.2).status is MatchStatus.NO_MATCH, 'ToF flowing, stamps far apart'
    assert p.match(9_000 * MS, now=101.6).status is MatchStatus.SILENT, 'ToF stopped arriving'
    p.add_depth(9_010 * MS, 'new', now=101.7)
    m = p.match(9_000 * MS, now=101.7)
    assert m.status is MatchStatus.MATCHED and m.tof == 'new', 'ToF returned: matched again'
    # A ToF within tolerance is used even when the stream has gone quiet since (it is the right data).
    assert p.match(9_000 * MS, now=150.0).status is MatchStatus.MATCHED


def test_confidence_must_carry_the_matched_tof_stamp():
    p = ToFPairer(max_time_diff=0.02, use_confidence=True)  # A (1000) is out of tolerance of 1030
    p.add_depth(1000 * MS, 'depth A', now=0.0)
    p.add_depth(1033 * MS, 'depth B', now=0.0)
    p.add_confidence(1000 * MS, 'conf A')
    p.add_confidence(1034 * MS, 'conf near B')  # not B's stamp
    m = p.match(1030 * MS, now=0.0)
    assert m.status is MatchStatus.NO_CONFIDENCE and m.tof_stamp == 1033 * MS, m
    m = p.match(1005 * MS, now=0.0)
    assert (m.status, m.tof, m.confidence) == (MatchStatus.MATCHED, 'depth A', 'conf A'), m
    p.add_confidence(1033 * MS, 'conf B')  # arrives after its depth
    m = p.match(1030 * MS, now=0.0)
    assert (m.tof, m.confidence) == ('depth B', 'conf B'), m


def test_a_tof_frame_still_without_confidence_is_passed_over_for_a_complete_one():
    """Depth and confidence are separate topics: the nearest ToF frame may lack its confidence image
    when the student arrives; the next nearest complete frame within max_time_diff is used instead."""
    p = ToFPairer(max_time_diff=0.05, use_confidence=True)
    for t in (1000, 1033, 1066):
        p.add_depth(t * MS, f'depth {t}', now=0.0)
    p.add_confidence(1000 * MS, 'conf 1000')
    p.add_confidence(1066 * MS, 'conf 1066')
    m = p.match(1040 * MS, now=0.0)  # nearest 1033 has no confidence; 1066 (26 ms) beats 1000 (40 ms)
    assert (m.status, m.tof, m.confidence, m.tof_stamp) == (MatchStatus.MATCHED, 'depth 1066', 'conf 1066',
                                                            1066 * MS), m
    assert m.dt == pytest.approx(-0.026), m
    m = p.match(1020 * MS, now=0.0)  # 1033 incomplete, 1000 (20 ms) nearer than 1066 (46 ms)
    assert (m.tof, m.confidence) == ('depth 1000', 'conf 1000'), m
    m = p.match(1130 * MS, now=0.0)
    assert m.status is MatchStatus.NO_MATCH, 'complete frames outside the tolerance are not used'
    p.confidence.clear()
    m = p.match(1040 * MS, now=0.0)
    assert m.status is MatchStatus.NO_CONFIDENCE and m.tof_stamp == 1033 * MS, 'none complete: the nearest'


def test_confidence_ignored_when_not_used():
    p = ToFPairer(max_time_diff=0.05, use_confidence=False)
    p.add_depth(0, 'depth', now=0.0)
    p.add_confidence(0, 'conf')
    m = p.match(0, now=0.0)
    assert m.matched and m.confidence is None


def test_configure_and_clear():
    p = ToFPairer(max_time_diff=0.0, capacity=4)
    for t in range(4):
        p.add_depth(t * MS, t, now=0.0)
    assert p.match(1 * MS, now=0.0).matched, 'max_time_diff 0: exact stamps match'
    assert not p.match(1 * MS + 1, now=0.0).matched
    p.configure(max_time_diff=0.01, capacity=2, use_confidence=True, timeout=3.0)
    assert [s for s, _ in p.depth] == [2 * MS, 3 * MS] and p.watch.timeout == 3.0
    p.clear()
    assert len(p.depth) == 0 and p.match(0, now=0.0).status is MatchStatus.WAITING


def held(pairer=None, **kw):
    pairer = pairer or ToFPairer(**{'max_time_diff': 0.05, 'timeout': 1.0, 'start': 0.0, **kw})
    return pairer, StudentHold(pairer)


def test_a_student_frame_waits_while_the_newest_tof_is_older():
    p, hold = held()
    p.add_depth(1000 * MS, 'tof 1000', now=0.0)
    assert hold.offer(1030 * MS, 'student 1030', now=0.01) == [], 'newest ToF older: held'
    assert hold.deadline == pytest.approx(0.06)
    assert hold.poll(now=0.02) == [], 'nothing new, the hold has not expired'
    p.add_depth(1029 * MS, 'tof 1029', now=0.03)
    assert hold.poll(now=0.03) == [], 'a ToF still before the student stamp: keep waiting'
    p.add_depth(1030 * MS, 'tof 1030', now=0.04)
    (item, match), = hold.poll(now=0.04)
    assert (item, match.tof, match.dt) == ('student 1030', 'tof 1030', 0.0), 'a ToF at its stamp releases it'
    assert hold.deadline is None and hold.poll(now=1.0) == []


def test_the_hold_expires_after_max_time_diff():
    p, hold = held()
    p.add_depth(1000 * MS, 'tof 1000', now=0.0)
    hold.offer(1040 * MS, 'student', now=0.1)
    assert hold.poll(now=0.1 + 0.049) == [], 'just inside max_time_diff: still held'
    (item, match), = hold.poll(now=0.1 + 0.05)
    assert item == 'student' and match.tof == 'tof 1000' and match.dt == pytest.approx(0.04), match


def test_no_wait_when_the_tof_is_ahead_silent_or_max_time_diff_is_zero():
    p, hold = held()
    p.add_depth(1100 * MS, 'tof 1100', now=0.0)
    assert [m.tof for _, m in hold.offer(1080 * MS, 's', now=0.0)] == ['tof 1100'], 'ToF already after it'
    assert [m.status for _, m in hold.offer(2000 * MS, 's', now=1.5)] == [MatchStatus.SILENT], 'ToF silent'
    p, hold = held(max_time_diff=0.0)
    p.add_depth(1000 * MS, 'tof', now=0.0)
    assert [m.status for _, m in hold.offer(1010 * MS, 's', now=0.0)] == [MatchStatus.NO_MATCH]


def test_a_newer_student_frame_releases_the_held_one():
    p, hold = held()
    p.add_depth(1000 * MS, 'tof 1000', now=0.0)
    assert hold.offer(1033 * MS, 'first', now=0.0) == []
    out = hold.offer(1066 * MS, 'second', now=0.01)
    assert [(i, m.status) for i, m in out] == [('first', MatchStatus.MATCHED)], out
    assert hold.deadline == pytest.approx(0.06), 'the second is held now'


def test_with_confidence_only_a_complete_tof_frame_releases():
    p, hold = held(use_confidence=True)
    hold.offer(1000 * MS, 'student', now=0.0)
    p.add_depth(1000 * MS, 'depth', now=0.01)
    assert hold.poll(now=0.01) == [], 'its confidence image is still missing'
    assert p.newest_usable() is None
    p.add_confidence(1000 * MS, 'conf')
    (item, match), = hold.poll(now=0.02)
    assert (match.tof, match.confidence) == ('depth', 'conf')


def test_tof_frames_published_alone():
    p = ToFPairer(max_time_diff=0.05, use_confidence=True)
    p.add_depth(100 * MS, 'depth 100', now=0.0)
    assert p.alone(100 * MS, last=-1) is None, 'no confidence yet'
    p.add_confidence(100 * MS, 'conf 100')
    assert p.alone(100 * MS, last=-1) == ('depth 100', 'conf 100')
    assert p.alone(100 * MS, last=100 * MS) is None, 'each stamp once'
    p.add_depth(50 * MS, 'depth 50', now=0.0)
    p.add_confidence(50 * MS, 'conf 50')
    assert p.alone(50 * MS, last=100 * MS) is None, 'an older frame after a newer one'
    assert p.alone(50 * MS, last=50 * MS + 1_000 * MS) == ('depth 50', 'conf 50'), 'stamps jumped back 1 s'
    assert p.alone(50 * MS, last=50 * MS + 1_000 * MS - 1) is None, 'just under 1 s back: a late frame'
    p.use_confidence = False
    assert p.alone(50 * MS, last=-1) == ('depth 50', None)
