"""The benchmark console script: every figure for every model, metrics that match a direct computation,
outputs written, bad input refused in one line.

Real ONNX Runtime on real exports: the demo checkpoint (models/student_demo.pt; a random-weight student
where it is absent) exported by export_trt --skip-trt as FP32, FP16 and INT8 Q/DQ (calibrated on a handful
of built-in calibration frames), measured on a few frames of the built-in held-out set, in a scratch cache.
A tiny hand-built ONNX model whose outputs are known exactly gives metrics to check by hand. Few iterations
and frames: the figures are checked for presence and correctness, never for speed.
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rc_offline import benchmark, machine
from rc_offline.evaluation import EvalResult, evaluate, select_frames

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / 'models' / 'student_demo.pt'
HELDOUT_FRAMES = 3
FAST = ['--iterations', '3', '--warmup', '1']
LATENCY_KEYS = ('mean_ms', 'p50_ms', 'p90_ms', 'p99_ms', 'fps')


# -------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def cache(tmp_path_factory) -> Path:
    """A scratch RC_PERCEPTION_CACHE with the held-out and calibration splits the tests use."""
    from rc_offline.heldout import ensure_split
    root = tmp_path_factory.mktemp('rc_cache')
    ensure_split('heldout', HELDOUT_FRAMES, root=root)
    ensure_split('calibration', 8, root=root)
    return root


@pytest.fixture(scope='module')
def exported(tmp_path_factory, cache) -> Path:
    """FP32, FP16 and INT8 Q/DQ ONNX of the demo student, exported the way a user does."""
    pytest.importorskip('torch', reason='torch is needed to export the models (export_trt)')
    pytest.importorskip('modelopt', reason='nvidia-modelopt is needed for the INT8 Q/DQ export')
    from rc_offline.export import main as export_main
    from rc_offline.heldout import ensure_split
    checkpoint = DEMO_CHECKPOINT
    if not checkpoint.is_file():
        from student_models import student_files
        checkpoint = student_files().checkpoint
    out = tmp_path_factory.mktemp('exported')
    code = export_main(['--checkpoint', str(checkpoint), '--output-dir', str(out), '--skip-trt',
                        '--precision', 'fp32,fp16,int8', '--calib-images',
                        str(ensure_split('calibration', 8, root=cache))])
    assert code == 0, f'export_trt exited with {code}'
    return out


@pytest.fixture(scope='module')
def report(exported, cache, tmp_path_factory) -> tuple[dict, Path, str]:
    """One benchmark run over the exports on the default (held-out) set: (JSON, output path, stdout)."""
    out = tmp_path_factory.mktemp('results') / 'results.json'
    done = subprocess.run([sys.executable, '-m', 'rc_offline.benchmark', '--engine-dir', str(exported),
                           '--eval-frames', str(HELDOUT_FRAMES), '--output', str(out), *FAST],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, 'RC_PERCEPTION_CACHE': str(cache)})
    assert done.returncode == 0, \
        f'benchmark exited with {done.returncode}, expected 0; stderr:\n{done.stderr}'
    return json.loads(out.read_text()), out, done.stdout


def _is_figure(value) -> bool:
    """A number, or an n/a that says why: never a blank or a bare n/a."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isfinite(value)
    return isinstance(value, str) and value.startswith('n/a: ') and len(value) > len('n/a: ') + 3


def _table_rows(markdown: str, title: str) -> list[list[str]]:
    """Cells of the body rows of the markdown table under heading ``## title``."""
    lines = markdown.split(f'## {title}\n', 1)[1].split('\n## ', 1)[0].splitlines()
    rows = [line for line in lines if line.startswith('|')]
    return [[c.strip() for c in row.strip('|').split('|')] for row in rows[2:]]


# ------------------------------------------------------------------------------------- every figure

def test_every_model_gets_every_figure(report):
    data, _, _ = report
    measured = {m['file']: m for m in data['models'] if m['status'] == 'measured'}
    expected = {'student_demo_fp32.onnx', 'student_demo_fp16.onnx', 'student_demo_int8_qdq.onnx'} \
        if DEMO_CHECKPOINT.is_file() else {'student_fp32.onnx', 'student_fp16.onnx', 'student_int8_qdq.onnx'}
    assert set(measured) == expected, f'measured {sorted(measured)}, expected {sorted(expected)}; ' \
                                      f"all: {[(m['file'], m['status']) for m in data['models']]}"
    assert sorted(m['precision'] for m in measured.values()) == ['fp16', 'fp32', 'int8']
    for name, m in measured.items():
        lat = m['latency']
        for kind in ('inference', 'end_to_end', 'pipeline_preprocess', 'pipeline_infer',
                     'pipeline_postprocess'):
            for key in LATENCY_KEYS:
                value = lat[kind][key]
                assert isinstance(value, float) and value > 0, f'{name} {kind} {key} = {value!r}'
            assert len(lat[kind]['samples_ms']) == 3, f'{name} {kind}: {len(lat[kind]["samples_ms"])} samples'
            assert lat[kind]['p50_ms'] <= lat[kind]['p90_ms'] <= lat[kind]['p99_ms'], f'{name} {kind}'
        assert lat['compute_only'] == 'n/a: CPU backend has no device copies', lat['compute_only']
        memory = m['memory']
        assert isinstance(memory['rss_delta_mib'], float), f"{name} RSS delta {memory['rss_delta_mib']!r}"
        assert memory['engine_device_mib'].startswith('n/a: CPU'), memory['engine_device_mib']
        assert memory['gpu_mem_delta_mib'].startswith('n/a: CPU'), memory['gpu_mem_delta_mib']
        acc = m['accuracy']
        assert acc['frames'] == HELDOUT_FRAMES, f"{name} evaluated {acc['frames']} frames"
        for key in ('rmse_m', 'absrel', 'delta1', 'miou', 'pixel_accuracy', 'coverage'):
            assert isinstance(acc[key], float), f'{name} {key} = {acc[key]!r}'
        assert set(acc['iou']) == set(m['classes'])
        assert all(_is_figure(v) for v in acc['iou'].values()), f"{name} IoU {acc['iou']}"
        assert 0 < acc['rmse_m'] < 2.0 and 0 <= acc['miou'] <= 1, f'{name} implausible {acc}'
        assert all(_is_figure(v) for v in memory.values()), f'{name} memory {memory}'


def test_markdown_json_and_plot_are_written_with_no_blank_cell(report):
    data, out, stdout = report
    markdown = out.with_suffix('.md').read_text()
    assert markdown in stdout, 'the printed report differs from the .md file'
    rows = _table_rows(markdown, 'Latency, memory, accuracy')
    measured = [r for r in rows if r[0].endswith('.onnx')]
    assert len(measured) == 3, f'expected 3 measured rows, got {len(measured)}: {rows}'
    for row in rows:
        assert all(row), f'blank cell in {row}'
    for row in measured:
        assert '†' not in ''.join(row) and row[9].startswith('n/a: '), row
    for row in _table_rows(markdown, 'Segmentation IoU per class'):
        assert all(row), f'blank cell in {row}'
    png = Path(data['plot'])
    assert png == out.with_name('results_latency.png') and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', \
        f'no PNG at {png}'
    facts = data['machine']
    assert all(isinstance(v, str) and v for v in facts.values()), facts
    assert facts['onnxruntime'][0].isdigit(), facts['onnxruntime']


def test_reference_rows_are_labelled_as_not_measured(report, exported, tmp_path, capsys):
    data, out, _ = report
    markdown = out.with_suffix('.md').read_text()
    refs = [r for r in _table_rows(markdown, 'Latency, memory, accuracy') if 'reference†' in r[0]]
    assert [r[0] for r in refs] == ['DA3-Small FP16 (reference†)', 'V9 student FP16 (reference†)',
                                    'V9 student INT8 (random calibration) (reference†)'], refs
    assert [(r[3], r[4], r[12], r[14]) for r in refs] == [
        ('308x308', '4.6†', '2,700 MB†', '0.522†'), ('240x320', '2.1†', '890 MB†', '0.382†'),
        ('240x320', '1.4†', '640 MB†', 'n/r')], refs
    assert 'not measured by this run' in markdown and 'LILocBench' in markdown
    assert data['reference'][1]['rmse_m'] == 0.382 and 'not measured' in data['reference_source']


# --------------------------------------------------------------------------------- metric correctness

def test_metrics_match_a_direct_computation_on_backend_outputs(report, exported, cache):
    """The tool's figures (from its own process) equal rc_offline.metrics on the backend's outputs with
    the ground truth taken at pixel (2i+1, 2j+1), computed here independently of rc_offline.evaluation."""
    from rc_offline.dataset import read_depth, read_image, read_rgb
    from rc_offline.metrics import ConfusionMatrix, DepthErrors
    from student_trt.backends import open_backend
    data, _, _ = report
    name = next(m['file'] for m in data['models'] if m.get('precision') == 'fp32')
    tool = next(m['accuracy'] for m in data['models'] if m['file'] == name)
    folder = Path(data['settings']['eval_data'])
    assert folder.parent == cache, f'evaluated on {folder}, expected the held-out split in {cache}'
    depth, confusion = DepthErrors(), ConfusionMatrix(5)
    with open_backend(exported / name, 'onnxruntime') as backend:
        from student_trt.preprocess import Preprocessor
        pre = Preprocessor(backend.spec)
        for stem in sorted(p.stem for p in (folder / 'rgb').iterdir()):
            out = backend.infer(pre(read_rgb(folder / 'rgb' / f'{stem}.png')))
            gt_depth = read_depth(folder / 'depth' / f'{stem}.png')
            gt_labels = read_image(folder / 'labels' / f'{stem}.png')
            assert gt_depth.shape == (480, 640), 'the test assumes a 2x downscale to 240x320'
            depth.add(out.depth[0, 0], gt_depth[1::2, 1::2])
            confusion.add(out.seg_logits[0].argmax(axis=0), gt_labels[1::2, 1::2])
    expected = {'rmse_m': depth.rmse, 'absrel': depth.absrel, 'delta1': depth.delta1_ratio,
                'miou': confusion.miou(), 'pixel_accuracy': confusion.pixel_accuracy()}
    for key, value in expected.items():
        assert tool[key] == pytest.approx(value, rel=1e-5), f'{key}: tool {tool[key]}, direct {value}'
    assert tool['depth_pixels'] == depth.count
    assert tool['confusion_matrix'] == confusion.matrix.tolist()


def _tiny_model(path: Path, size: int = 8) -> None:
    """An ONNX 'student' whose outputs are known: depth = 1 + 2 R, logits = (R, G, B, 0, 0), with R, G, B the
    normalized input channels in [0, 1] (mean 0, std 1)."""
    onnx = pytest.importorskip('onnx', reason='onnx builds the hand-made model')
    from onnx import TensorProto, helper

    from student_trt.metadata import ModelSpec
    spec = ModelSpec(height=size, width=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    const = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    nodes = [
        helper.make_node('Split', ['rgb'], ['r', 'g', 'b'], axis=1, num_outputs=3),
        helper.make_node('Mul', ['r', 'two'], ['r2']),
        helper.make_node('Add', ['r2', 'one'], ['depth']),
        helper.make_node('Mul', ['r', 'zero'], ['z']),
        helper.make_node('Concat', ['r', 'g', 'b', 'z', 'z'], ['seg_logits'], axis=1),
    ]
    graph = helper.make_graph(
        nodes, 'tiny', [helper.make_tensor_value_info('rgb', TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info('depth', TensorProto.FLOAT, [1, 1, size, size]),
         helper.make_tensor_value_info('seg_logits', TensorProto.FLOAT, [1, 5, size, size])],
        [const('two', 2.0), const('one', 1.0), const('zero', 0.0)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8
    for key, value in spec.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # -> classes 0, 1, 2


def _hand_made_set(root: Path) -> None:
    """Two 16x16 frames for the 8x8 tiny model. Each 2x2 block has one colour (so the area-average
    preprocessing gives pure colours); ground truth sits at the odd pixels (2i+1, 2j+1) and every other
    pixel holds a trap (9.999 m, class 4) that any other sampling would hit.

    Frame a: prediction class 0 / depth 3.0 m on columns 0-3, class 1 / 1.0 m on 4-7; ground truth labels
    0 on columns 0-1, 1 on 2-5, 2 on 6-7; depth 2.0 m on 0-3, 1.1 m on 4-7, none on row 0.
    Frame b: everything blue: prediction class 2 / 1.0 m; ground truth class 2, 1.0 m.
    """
    from rc_offline.dataset import write_depth, write_image
    pred_a = np.zeros((8, 8), np.intp)
    pred_a[:, 4:] = 1
    labels_a = np.zeros((8, 8), np.uint8)
    labels_a[:, 2:6], labels_a[:, 6:] = 1, 2
    depth_a = np.full((8, 8), 2.0, np.float32)
    depth_a[:, 4:] = 1.1
    depth_a[0] = np.nan
    frames = {'a': (pred_a, labels_a, depth_a),
              'b': (np.full((8, 8), 2, np.intp), np.full((8, 8), 2, np.uint8), np.ones((8, 8), np.float32))}
    for stem, (pred, labels, depth) in frames.items():
        rgb = COLOURS[pred].repeat(2, axis=0).repeat(2, axis=1)
        gt_labels = np.full((16, 16), 4, np.uint8)
        gt_depth = np.full((16, 16), 9.999, np.float32)
        gt_labels[1::2, 1::2], gt_depth[1::2, 1::2] = labels, depth
        write_image(root / 'rgb' / f'{stem}.png', rgb)
        write_image(root / 'labels' / f'{stem}.png', gt_labels)
        write_depth(root / 'depth' / f'{stem}.png', gt_depth)


# Hand computation over both frames (pooled over pixels, not averaged over frames):
#   depth: frame a rows 1-7: 28 px of 3.0 vs 2.0 (err 1, rel 0.5, ratio 1.5) and 28 px of 1.0 vs 1.1
#   (err 0.1, rel 1/11, ratio 1.1 < 1.25); frame b: 64 px exact.  120 px in all.
#   confusion: class 0: TP 16, predicted 32, true 16 -> 1/2; class 1: TP 16, predicted 32, true 32 -> 1/3;
#   class 2: TP 64, predicted 64, true 80 -> 4/5; classes 3 and 4 in neither -> n/a.
HAND = {'rmse_m': math.sqrt((28 * 1.0 + 28 * 0.01) / 120), 'absrel': (28 * 0.5 + 28 / 11) / 120,
        'delta1': (28 + 64) / 120, 'miou': (1 / 2 + 1 / 3 + 4 / 5) / 3,
        'pixel_accuracy': (16 + 16 + 64) / 128, 'coverage': 1.0}
HAND_IOU = {'floor': 1 / 2, 'wall': 1 / 3, 'ceiling': 4 / 5}


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    models, data = tmp_path / 'models', tmp_path / 'handmade'
    models.mkdir()
    _tiny_model(models / 'tiny_fp32.onnx')
    _hand_made_set(data)
    return models, data


def _check_hand_figures(acc: dict) -> None:
    for key, value in HAND.items():
        assert acc[key] == pytest.approx(value, rel=1e-5), f'{key}: got {acc[key]}, by hand {value}'
    for name, value in HAND_IOU.items():
        assert acc['iou'][name] == pytest.approx(value, rel=1e-6), \
            f"IoU {name}: {acc['iou'][name]}, by hand {value}"
    for name in ('box', 'cylinder'):  # the traps at even pixels would make these 0.0
        assert acc['iou'][name].startswith('n/a: '), f'IoU {name}: {acc["iou"][name]!r}, expected n/a'
    assert acc['depth_pixels'] == 120 and acc['frames'] == 2 and acc['grid'] == [8, 8], acc


def test_hand_made_set_through_the_cli(tiny, tmp_path, capsys):
    models, data = tiny
    out = tmp_path / 'tiny.json'
    code = benchmark.main(['--engine-dir', str(models), '--eval-data', str(data), '--output', str(out),
                           '--no-reference', *FAST])
    captured = capsys.readouterr()
    assert code == 0, f'exit {code}; stderr:\n{captured.err}'
    record = json.loads(out.read_text())['models'][0]
    _check_hand_figures(record['accuracy'])
    assert 'reference' not in json.loads(out.read_text()), '--no-reference still wrote reference rows'
    row = _table_rows(out.with_suffix('.md').read_text(), 'Latency, memory, accuracy')
    assert len(row) == 1 and row[0][-4:] == ['0.485', '0.138', '0.767', '0.544'], row


def test_hand_made_set_through_evaluate(tiny):
    from student_trt.backends import open_backend
    models, data = tiny
    with open_backend(models / 'tiny_fp32.onnx', 'onnxruntime') as backend:
        result = evaluate(backend, data)
    _check_hand_figures(result.summary())


def test_confusion_aggregation_pools_pixels_over_frames():
    """mIoU of a known confusion through EvalResult.add: pooled over frames, absent classes n/a."""
    result = EvalResult(('a', 'b', 'c'))
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    result.add(np.ones((1, 4), np.float32), np.array([[0, 1, 1, 1]], np.uint8), np.ones((1, 4)), gt)
    result.add(np.ones((1, 4), np.float32), np.array([[0, 0, 0, 0]], np.uint8), np.ones((1, 4)),
               np.array([[0, 0, 255, 255]], np.uint8))  # 255: no ground truth
    # labelled pixels only: class a: TP 1 + 2, predicted 1 + 2, true 2 + 2 -> 3/4; class b: TP 2,
    # predicted 3, true 2 -> 2/3; class c in neither -> n/a
    summary = result.summary()
    assert summary['iou']['a'] == pytest.approx(3 / 4), summary
    assert summary['iou']['b'] == pytest.approx(2 / 3), summary
    assert summary['iou']['c'].startswith('n/a: ') and summary['miou'] == pytest.approx((3 / 4 + 2 / 3) / 2)


def test_ground_truth_sampling_takes_odd_pixels_at_2x():
    from rc_offline.evaluation import ground_truth_on_grid
    gt = np.arange(16 * 16).reshape(16, 16)
    np.testing.assert_array_equal(ground_truth_on_grid(gt, 8, 8), gt[1::2, 1::2])
    np.testing.assert_array_equal(ground_truth_on_grid(gt, 16, 16), gt)


def test_eval_frames_zero_gives_latency_only_with_reasons(tiny, tmp_path, capsys):
    models, _ = tiny
    out = tmp_path / 'latency_only.json'
    assert benchmark.main(['--engine-dir', str(models), '--eval-frames', '0', '--output', str(out),
                           *FAST]) == 0, capsys.readouterr().err
    record = json.loads(out.read_text())['models'][0]
    acc = record['accuracy']
    assert acc['rmse_m'] == 'n/a: accuracy not evaluated (--eval-frames 0)', acc
    assert all(v.startswith('n/a: accuracy not evaluated') for v in acc['iou'].values()), acc['iou']
    assert 'synthetic' in record['latency']['frame'], record['latency']['frame']


def test_select_frames_spreads_evenly(tiny):
    _, data = tiny
    assert [f.stem for f in select_frames(data, 1)] == ['a']
    assert [f.stem for f in select_frames(data, 5)] == ['a', 'b']


# ------------------------------------------------------------------------------------------ bad input

def _one_line_error(code: int, err: str, expected_code: int, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, f'exit code {code}, expected {expected_code}; stderr: {err!r}'
    assert len(lines) == 1 and lines[0].startswith('benchmark: error: '), f'expected one error line: {err!r}'
    assert fragment in lines[0], f'{fragment!r} not in {lines[0]!r}'
    assert 'Traceback' not in err


@pytest.mark.parametrize('case, expected_code, fragment', [
    ('missing', 1, 'does not exist'),
    ('file', 1, 'is not a directory'),
    ('empty', 1, 'holds no model'),
    ('no_models', 1, 'holds no model (.onnx, .engine, .plan); found notes.txt'),
    ('eval_without_labels', 1, "has no 'labels/' folder"),
    ('eval_missing', 1, 'is not a directory'),
    ('iterations_zero', 2, '--iterations must be >= 1, got 0'),
    ('threads_negative', 2, '--threads must be >= 0'),
    ('iterations_text', 2, "invalid int value: 'many'"),
    ('backend_unknown', 2, "invalid choice: 'cuda'"),
    ('tensorrt_here', 1, 'TensorRT'),
])
def test_bad_input_is_one_clear_line(case, expected_code, fragment, tiny, tmp_path, capsys):
    models, data = tiny
    args = {
        'missing': ['--engine-dir', str(tmp_path / 'nowhere')],
        'file': ['--engine-dir', str(models / 'tiny_fp32.onnx')],
        'empty': ['--engine-dir', str(tmp_path / 'empty')],
        'no_models': ['--engine-dir', str(tmp_path / 'notes')],
        'eval_without_labels': ['--engine-dir', str(models), '--eval-data', str(tmp_path / 'partial')],
        'eval_missing': ['--engine-dir', str(models), '--eval-data', str(tmp_path / 'no_data')],
        'iterations_zero': ['--engine-dir', str(models), '--iterations', '0'],
        'threads_negative': ['--engine-dir', str(models), '--threads', '-1'],
        'iterations_text': ['--engine-dir', str(models), '--iterations', 'many'],
        'backend_unknown': ['--engine-dir', str(models), '--backend', 'cuda'],
        'tensorrt_here': ['--engine-dir', str(tmp_path / 'engines'), '--backend', 'tensorrt'],
    }[case]
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'notes' / 'notes.txt').write_text('not a model')
    for kind in ('rgb', 'depth'):
        (tmp_path / 'partial' / kind).mkdir(parents=True)
    (tmp_path / 'engines').mkdir()
    (tmp_path / 'engines' / 'student_fp16.engine').write_bytes(b'not an engine')
    from student_trt.backends import probe_tensorrt
    if case == 'tensorrt_here' and probe_tensorrt()[0]:
        pytest.skip('checks the behaviour where tensorrt is not installed')
    try:
        code = benchmark.main([*args, '--output', str(tmp_path / 'r.json')])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    _one_line_error(code, capsys.readouterr().err, expected_code, fragment)
    assert not (tmp_path / 'r.json').exists(), 'a refused run wrote results'


def test_console_script_error_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'rc_offline.benchmark', '--engine-dir',
                           str(tmp_path / 'nowhere')], capture_output=True, text=True, timeout=60,
                          check=False)
    _one_line_error(done.returncode, done.stderr, 1, 'does not exist')


# -------------------------------------------------------------------------------------- engines, facts

def test_discovery_measures_what_runs_here_and_says_why_not_the_rest(tmp_path):
    from student_trt.engine_sidecar import sidecar_path
    for name in ('a_fp32.onnx', 'a_fp16.engine', 'a_int8.plan', 'a_modelopt.log', 'a_timing.cache'):
        (tmp_path / name).write_bytes(b'x')
    sidecar_path(tmp_path / 'a_fp16.engine').write_text('{}')

    def found(backend, tensorrt):
        models = benchmark.discover_models(tmp_path, backend, tensorrt)
        return {m.path.name: (m.backend, m.skip) for m in models}

    on_jetson = found('auto', (True, 'TensorRT 10.3.0 on Orin (sm 8.7)'))
    assert on_jetson['a_fp32.onnx'] == ('onnxruntime', '') and on_jetson['a_fp16.engine'] == ('tensorrt', '')
    assert on_jetson['a_int8.plan'][0] == '' and 'no sidecar a_int8.plan.json' in on_jetson['a_int8.plan'][1]
    assert set(on_jetson) == {'a_fp32.onnx', 'a_fp16.engine', 'a_int8.plan'}, on_jetson
    laptop = found('auto', (False, 'the tensorrt Python module is not installed'))
    assert laptop['a_fp32.onnx'] == ('onnxruntime', '')
    assert laptop['a_fp16.engine'][0] == '' and 'TensorRT cannot run here' in laptop['a_fp16.engine'][1]
    only_trt = found('tensorrt', (True, 'TensorRT 10.3.0'))
    assert only_trt['a_fp32.onnx'][0] == '' and only_trt['a_fp16.engine'] == ('tensorrt', '')
    only_ort = found('onnxruntime', None)
    assert only_ort['a_fp16.engine'][0] == '' and only_ort['a_fp32.onnx'] == ('onnxruntime', '')


def test_engine_that_cannot_run_here_is_skipped_not_fatal(tiny, tmp_path, capsys):
    from student_trt.backends import probe_tensorrt
    if probe_tensorrt()[0]:
        pytest.skip('checks the behaviour where tensorrt is not installed')
    models, data = tiny
    (models / 'tiny_fp16.engine').write_bytes(b'engine bytes')
    (models / 'tiny_fp16.engine.json').write_text('{}')
    out = tmp_path / 'mixed.json'
    code = benchmark.main(['--engine-dir', str(models), '--eval-data', str(data), '--output', str(out),
                           *FAST])
    err = capsys.readouterr().err
    assert code == 0, f'exit {code}: {err}'
    status = {m['file']: m['status'] for m in json.loads(out.read_text())['models']}
    assert status == {'tiny_fp16.engine': 'skipped', 'tiny_fp32.onnx': 'measured'}, status
    assert 'skipping tiny_fp16.engine: TensorRT engine, and TensorRT cannot run here' in err, err
    assert '- tiny_fp16.engine: skipped: TensorRT engine' in out.with_suffix('.md').read_text()


def test_machine_facts_never_fail_and_read_nvpmodel(tmp_path, monkeypatch):
    facts = machine.machine_facts()
    assert all(isinstance(v, str) and v for v in facts.values()), facts
    assert machine._fact(lambda: 1 / 0) == 'n/a: ZeroDivisionError: division by zero'
    fake = tmp_path / 'nvpmodel'
    fake.write_text('#!/bin/sh\necho "NV Power Mode: 15W"\necho 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert machine._power_mode() == '15W (mode 0)'
    fake.write_text('#!/bin/sh\necho "NVPM ERROR: failed to read PARAM" >&2\nexit 1\n')
    assert machine._power_mode() == 'n/a: nvpmodel -q: NVPM ERROR: failed to read PARAM'


def test_latency_statistics():
    stats = benchmark.latency_stats(np.arange(1, 101, dtype=float))
    assert (stats['mean_ms'], stats['p50_ms'], stats['p90_ms'], stats['p99_ms']) == (50.5, 50.5, 90.1, 99.01)
    assert stats['fps'] == pytest.approx(1000 / 50.5, abs=0.01) and stats['iterations'] == 100
