"""The committed demo student (models/student_demo.pt) and the train_student script."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is needed to load the demo student checkpoint')

from rc_offline import train  # noqa: E402
from rc_offline.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from rc_perception.resources import SOURCE_ROOT  # noqa: E402

CHECKPOINT = SOURCE_ROOT / 'models' / 'student_demo.pt'
#: Not the training seed (1) nor the held-out seed the training script reports on (1001).
TEST_SEED = 4242


def test_committed_checkpoint_is_small_weights_only_and_documented():
    assert CHECKPOINT.is_file(), f'{CHECKPOINT} is missing'
    size = CHECKPOINT.stat().st_size
    assert size < 10e6, f'demo checkpoint is {size / 1e6:.1f} MB, expected < 10 MB'
    raw = torch.load(CHECKPOINT, map_location='cpu', weights_only=True)
    assert raw['format'] == 'rc_perception.student/1'
    extra = read_checkpoint(CHECKPOINT).extra
    for key in ('steps', 'data_seed', 'frames', 'metrics', 'baseline_depth_m'):
        assert key in extra, f"checkpoint extra lacks '{key}' (has {sorted(extra)})"
    assert extra['data_seed'] != TEST_SEED
    model, spec = load_checkpoint(CHECKPOINT)
    assert (spec.height, spec.width) == (240, 320) and spec.class_names == train.DEMO_SPEC.class_names
    assert spec.depth_min <= 0.1 and spec.depth_max >= 10.0, 'depth range must cover the scenes'


def test_committed_checkpoint_beats_the_constant_baseline_on_unseen_frames():
    model, spec = load_checkpoint(CHECKPOINT)
    baseline_depth = read_checkpoint(CHECKPOINT).extra['baseline_depth_m']
    data = train.render_set(TEST_SEED, 6, spec)
    results = train.evaluate(model, data, baseline_depth)
    student, baseline = results['student'], results['baseline']
    assert student['rmse'] < 0.5 * baseline['rmse'], f'RMSE {student["rmse"]:.3f} vs {baseline["rmse"]:.3f}'
    assert student['absrel'] < 0.3 * baseline['absrel'], \
        f'AbsRel {student["absrel"]:.3f} vs {baseline["absrel"]:.3f}'
    assert student['delta1'] > baseline['delta1'] + 0.4, \
        f'delta<1.25 {student["delta1"]:.3f} vs {baseline["delta1"]:.3f}'
    assert student['miou'] > 0.6, f'mIoU {student["miou"]:.3f}'


def test_train_student_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / 'tiny.pt'
    code = train.main(['--out', str(out), '--steps', '2', '--frames', '3', '--heldout-frames', '2',
                       '--batch-size', '2', '--workers', '1', '--seed', '5', '--heldout-seed', '6'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'constant' in printed and 'RMSE m' in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary['steps'] == 2 and np.isfinite(summary['student_rmse'])
    extra = read_checkpoint(out).extra
    assert (extra['steps'], extra['data_seed'], extra['frames']) == (2, 5, 3)
    assert extra['metrics']['baseline']['rmse'] == pytest.approx(summary['baseline_rmse'])
    load_checkpoint(out)


def test_evaluate_mode_reports_on_a_checkpoint(capsys):
    assert train.main(['--evaluate', str(CHECKPOINT), '--heldout-seed', str(TEST_SEED),
                       '--heldout-frames', '2', '--workers', '1']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['student_rmse'] < summary['baseline_rmse']


@pytest.mark.parametrize(('argv', 'message'), [
    (['--steps', '0'], '--steps must be >= 1'),
    (['--seed', '3', '--heldout-seed', '3'], 'must differ'),
])
def test_train_student_rejects_bad_arguments(argv, message, capsys, tmp_path):
    assert train.main(['--out', str(tmp_path / 'x.pt'), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not Path(tmp_path / 'x.pt').exists()


def test_evaluate_refuses_the_training_seed(capsys):
    assert train.main(['--evaluate', str(CHECKPOINT), '--heldout-seed', '1', '--heldout-frames', '1']) == 2
    assert 'trained on' in capsys.readouterr().err
