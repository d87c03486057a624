"""The demo end to end on a short sequence: data, export, three node processes over DDS, report."""

import json
import subprocess
import sys

import pytest

from ros_harness import REPO

pytestmark = [pytest.mark.dds, pytest.mark.slow]

REQUIRED = ['rmse_student', 'rmse_tof', 'rmse_fused', 'coverage_student', 'coverage_tof', 'coverage_fused',
            'absrel_student', 'absrel_tof', 'absrel_fused', 'delta1_student', 'delta1_tof', 'delta1_fused',
            'miou', 'frames_in', 'frames_out', 'dropped', 'fps', 'latency_ms_p50', 'latency_ms_p99']


def test_demo_runs_end_to_end_and_fusion_does_what_the_seed_claims(tmp_path):
    out = tmp_path / 'demo_output'
    result = subprocess.run(
        [sys.executable, '-m', 'rc_perception.demo', '--frames', '12', '--calib-frames', '6',
         '--output', str(out), '--cache', str(tmp_path / 'cache')],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    metrics = json.loads((out / 'metrics.json').read_text())
    missing = [k for k in REQUIRED if metrics.get(k) is None]
    assert not missing, f'metrics.json lacks values for {missing}'
    assert metrics['frames_in'] == 12 and 0 < metrics['frames_out'] <= 12
    assert metrics['frames_out'] + metrics['dropped'] == metrics['frames_in']
    # The seed's claim, on the frames that went through: fused covers at least what each source covers,
    # beats the student alone, and equals the ToF wherever the ToF is valid and confident.
    assert metrics['coverage_fused'] >= max(metrics['coverage_student'], metrics['coverage_tof'])
    assert metrics['rmse_fused'] < metrics['rmse_student']
    assert metrics['tof_pixels_replaced'] == 0 and metrics['tof_valid_pixels'] > 0
    assert metrics['fused_zero_pixels'] == 0
    assert all(metrics['checks'].values()), metrics['checks']
    report = (out / 'report.md').read_text()
    assert 'PASS' in report and 'FAIL' not in report
    panels = sorted(p.name for p in out.glob('panel_*.png'))
    assert len(panels) == 3 and all(f'({name})' in report for name in panels)
    assert {p.name for p in (out / 'logs').iterdir()} == {
        'student_trt_node.log', 'depth_fusion_node.log', 'pointcloud_xyz_node.log'}


def test_demo_rejects_bad_arguments_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'rc_perception.demo', '--frames', '1',
                             '--output', str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'demo: --frames must be >= 2, --calib-frames >= 1 and --rate > 0']
