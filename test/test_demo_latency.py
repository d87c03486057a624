"""rc_offline.demo_latency: the demo's latency breakdown from constructed diagnostics and arrival times."""

import math

import pytest

from rc_offline.demo_latency import breakdown, write_plot


def diag(node: str, **phases) -> dict:
    """A node's /diagnostics values with the given p50 figures (p99 = 2 x p50)."""
    values = {}
    for phase, ms in phases.items():
        name = phase.replace('_', ' ')
        values[f'{name} p50 (ms)'] = f'{ms:.3f}'
        values[f'{name} p99 (ms)'] = f'{2 * ms:.3f}'
    return {f'{node}: what it does': values}


DIAGNOSTICS = {
    **diag('student_trt_node', input_age=2.0, wait=1.0, compute=20.0, publish=0.5, output_age=23.5),
    **diag('depth_fusion_node', input_age=25.0, wait=0.0, compute=1.5, publish=0.5, output_age=27.0),
    **diag('pointcloud_xyz_node', input_age=28.5, wait=0.0, compute=2.0, publish=1.0, output_age=31.5),
}


def test_segments_lay_the_phases_end_to_end_and_name_the_slowest():
    b = breakdown(DIAGNOSTICS, {}, {})
    seg = dict(b.segments())
    assert seg['DDS -> student'] == 2.0
    assert seg['DDS -> fusion'] == pytest.approx(25.0 - 23.5)
    assert seg['DDS -> cloud'] == pytest.approx(28.5 - 27.0)
    assert seg['student compute'] == 20.0 and seg['cloud publish'] == 1.0
    assert sum(seg.values()) == pytest.approx(31.5), 'the segments add up to the cloud output age'
    assert b.dominant() == ('student compute', 20.0)
    assert b.nodes['fusion']['compute'] == (1.5, 3.0)
    m = b.metrics()
    assert m['latency_dominant_segment'] == 'student compute'
    assert m['latency_DDS_to_fusion_ms_p50'] == pytest.approx(1.5)


def test_per_frame_stages_from_stamps_and_arrivals():
    ms = 1_000_000
    stamps = {f'{i:02d}': i * 100 * ms for i in range(5)}
    # Frame i: student out after 20 + i ms, fused 3 ms later, cloud 4 ms after that; frame 04 lost its cloud.
    arrivals = {stem: {'student': t + (20 + i) * ms, 'fused': t + (23 + i) * ms, 'cloud': t + (27 + i) * ms}
                for i, (stem, t) in enumerate(stamps.items())}
    del arrivals['04']['cloud']
    b = breakdown({}, stamps, arrivals)
    assert b.frames['camera -> student out'][0] == pytest.approx(22.0)
    assert b.frames['camera -> student out'][2] == 5
    assert b.frames['student -> fused out'][:2] == pytest.approx((3.0, 3.0))
    p50, p99, n = b.frames['camera -> cloud out']
    assert n == 4 and p50 == pytest.approx(28.5) and p99 == pytest.approx(29.97)
    assert math.isnan(b.dominant()[1]), 'no node diagnostics: no slowest segment to name'


def test_report_lines_and_plot(tmp_path):
    b = breakdown(DIAGNOSTICS, {'a': 0}, {'a': {'student': 25_000_000, 'fused': 28_000_000,
                                                'cloud': 33_000_000}})
    text = '\n'.join(b.lines('latency.png'))
    assert '**student compute**, 20.0 ms' in text
    assert '| camera -> cloud out | 33.0 | 33.0 | 1 |' in text
    assert '| fusion compute | 1.5 | 3.0 |' in text and '![latency](latency.png)' in text
    write_plot(b, tmp_path / 'latency.png')
    assert (tmp_path / 'latency.png').stat().st_size > 1000
