"""export_trt end to end on a small, briefly trained student: ONNX round trip and metadata, FP16 and INT8
accuracy against FP32 in ONNX Runtime, random-calibration handling, and one-line errors for bad arguments.

Tolerances are the tool's own (rc_offline.export): FP16 vs FP32 depth RMSE <= 0.2 % of the depth range,
max |diff| <= 2 %, segmentation argmax agreement >= 99 %; INT8 vs FP32 depth RMSE <= 2 % of the range,
agreement >= 95 %. FP32 ONNX vs PyTorch: 1e-3 m depth, 1e-3 x max |logit|.
"""

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

from rc_offline.dataset import write_image
from student_trt.metadata import ModelSpec

torch = pytest.importorskip('torch')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('modelopt.onnx.quantization', reason='nvidia-modelopt not installed')

from rc_offline import export  # noqa: E402  (after the skips)
from rc_offline.checkpoint import save_checkpoint  # noqa: E402
from rc_offline.model import StudentConfig, StudentNet  # noqa: E402
from student_trt.engine_sidecar import sha256_file  # noqa: E402
from student_trt.preprocess import Preprocessor  # noqa: E402
from student_trt.trt_build import plan_build, tensorrt_version  # noqa: E402

H, W = 64, 96
pytestmark = pytest.mark.slow


def scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A toy corridor: wall above a horizon, floor below getting nearer, red boxes standing on the floor."""
    yy = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    horizon = int(h * rng.uniform(0.35, 0.6))
    wall = rng.uniform(4, 9)
    t = np.clip((yy - horizon + 1) / (h - horizon), 0, 1)
    floor = yy >= horizon
    depth = np.where(floor, wall / (1 + 6 * t), wall).astype(np.float32)
    labels = np.where(floor, 0, 1).astype(np.int64)
    img = np.where(floor[..., None], np.array([110, 90, 70]) * (0.6 + 0.4 * t[..., None]),
                   rng.uniform(80, 200, 3)).astype(np.float32)
    for _ in range(rng.integers(1, 4)):
        bh, bw = rng.integers(h // 8, h // 3), rng.integers(w // 10, w // 4)
        y1, x0 = rng.integers(horizon + 1, h), rng.integers(0, w - bw)
        y0 = max(0, y1 - bh)
        img[y0:y1, x0:x0 + bw] = (220, 40, 60)
        depth[y0:y1, x0:x0 + bw] = depth[y1 - 1, x0]
        labels[y0:y1, x0:x0 + bw] = 3
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), depth, labels


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A checkpoint trained for a few seconds at 64x96 and a dataset folder of 20 camera-size images."""
    root = tmp_path_factory.mktemp('export')
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    spec = ModelSpec(height=H, width=W)
    data = [scene(rng, H, W) for _ in range(32)]
    x = torch.from_numpy(Preprocessor(spec).batch([d[0] for d in data]))
    depth = torch.from_numpy(np.stack([d[1] for d in data]))[:, None]
    labels = torch.from_numpy(np.stack([d[2] for d in data]))
    net = StudentNet(StudentConfig(base_channels=16))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 intra-op threads made this 8x slower
    try:
        for _ in range(60):
            idx = torch.randint(0, len(data), (8,))
            d, s = net(x[idx])
            loss = (d - depth[idx]).abs().mean() + torch.nn.functional.cross_entropy(s, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    checkpoint = root / 'student_test.pt'
    save_checkpoint(checkpoint, net, spec, extra={'note': 'test model'})
    dataset = root / 'dataset'
    for i in range(20):
        write_image(dataset / 'rgb' / f'{i:04d}.png', scene(rng, 2 * H, 2 * W)[0])  # resized by the export
    (dataset / 'camera.yaml').write_text('width: 192\n')  # dataset files outside rgb/ are ignored
    return {'root': root, 'checkpoint': checkpoint, 'dataset': dataset, 'net': net, 'spec': spec}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = export.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, code: int, expected_code: int, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert code == expected_code, f'exit code {expected_code} expected, got {code}; stderr: {err}'
    assert len(lines) == 1 and lines[0].startswith('export_trt: error: '), f'one error line expected: {err!r}'
    assert 'Traceback' not in err
    for part in parts:
        assert part in lines[0], f'expected {part!r} in {lines[0]!r}'


def metadata(path) -> ModelSpec:
    model = onnx.load(str(path))
    return ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props}, str(path))


def run_onnx(path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    outs = [session.run(['depth', 'seg_logits'], {'rgb': xi[None]}) for xi in x]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


@pytest.fixture(scope='module')
def full_export(work):
    """One export with real calibration images and the default precisions (no --skip-trt: no TensorRT here).
    capsys is function-scoped, so this module-scoped run captures its output itself."""
    out = work['root'] / 'out'
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = export.main(['--checkpoint', str(work['checkpoint']), '--output-dir', str(out),
                            '--calib-images', str(work['dataset']), '--calib-count', '12'])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_full_export_writes_every_onnx_and_a_summary(full_export):
    code, stdout, stderr, out = full_export
    assert code == 0, f'exit code {code}; stderr: {stderr}\nstdout: {stdout}'
    names = sorted(p.name for p in out.iterdir())
    for name in ('student_test_fp32.onnx', 'student_test_fp16.onnx', 'student_test_int8_qdq.onnx'):
        assert name in names, f'{name} missing from {names}'
    assert not [n for n in names if n.endswith('.engine')], 'no engines without TensorRT'
    assert 'TensorRT is not installed here' in stdout and 'ONNX artifacts only' in stdout
    assert 'calibrating on 12 images from' in stdout, stdout
    table = stdout[stdout.index('artifact  '):]
    for name in ('student_test_fp32.onnx', 'student_test_fp16.onnx', 'student_test_int8_qdq.onnx'):
        assert name in table and 'FAILED' not in table, table
    assert 'accuracy vs FP32 (4 held-out images)' in table, table


def test_onnx_metadata_and_io(full_export, work):
    out = full_export[3]
    base = work['spec']
    for name, precision, opset in (('fp32', 'fp32', 17), ('fp16', 'fp16', 19), ('int8_qdq', 'int8', 17)):
        path = out / f'student_test_{name}.onnx'
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert [(o.domain, o.version) for o in model.opset_import] == [('', opset)], name
        assert model.ir_version == {17: 8, 19: 9}[opset], f'{name}: IR {model.ir_version} (TRT 8.5: IR 8)'
        spec = metadata(path)
        assert spec.precision == precision, f'{name}: precision {spec.precision}'
        assert (spec.height, spec.width, spec.mean, spec.std, spec.class_names, spec.depth_min,
                spec.depth_max, spec.color_order) == (base.height, base.width, base.mean, base.std,
                                                      base.class_names, base.depth_min, base.depth_max,
                                                      base.color_order), f'{name}: {spec}'
        assert spec.extra['checkpoint'] == 'student_test.pt' and spec.extra['onnx_variant'] == name
        assert spec.extra['checkpoint_sha256'] == sha256_file(work['checkpoint'])
        ios = {v.name: (v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
               for v in list(model.graph.input) + list(model.graph.output)}
        expected = {'rgb': (1, [1, 3, H, W]), 'depth': (1, [1, 1, H, W]), 'seg_logits': (1, [1, 5, H, W])}
        assert ios == expected, f'{name}: I/O must be float32 with static batch-1 shapes, got {ios}'
    assert metadata(out / 'student_test_int8_qdq.onnx').calibration.startswith('12 images from '), \
        'the INT8 model must say what it was calibrated on'
    assert metadata(out / 'student_test_fp32.onnx').calibration == ''


def test_fp32_onnx_matches_pytorch(full_export, work):
    out = full_export[3]
    x = Preprocessor(work['spec']).batch([scene(np.random.default_rng(7), 100, 150)[0]])
    with torch.no_grad():
        expected = [t.numpy() for t in work['net'](torch.from_numpy(x))]
    got = run_onnx(out / 'student_test_fp32.onnx', x)
    for name, a, b in zip(('depth', 'seg'), got, expected, strict=True):
        diff = float(np.max(np.abs(a - b)))
        assert diff < 1e-4, f'{name}: ONNX Runtime vs PyTorch max |diff| {diff}'


def test_fp16_and_int8_within_tolerance_of_fp32(full_export, work):
    out = full_export[3]
    rng = np.random.default_rng(11)
    x = Preprocessor(work['spec']).batch([scene(rng, 2 * H, 2 * W)[0] for _ in range(4)])
    reference = run_onnx(out / 'student_test_fp32.onnx', x)
    assert reference[1].argmax(axis=1).min() != reference[1].argmax(axis=1).max(), \
        'test model should predict more than one class'
    drange = work['spec'].depth_max - work['spec'].depth_min

    def versus_fp32(path):  # computed here, not by export.compare, against tolerances argued here
        depth, logits = run_onnx(path, x)
        diff = depth.astype(np.float64) - reference[0]
        return {'depth_rmse': float(np.sqrt(np.mean(diff ** 2))), 'depth_max': float(np.abs(diff).max()),
                'agreement': float(np.mean(logits.argmax(axis=1) == reference[1].argmax(axis=1)))}

    # FP16 keeps 11 significant bits: unit roundoff u = 2^-11 = 0.05 %. The output's own rounding is <= u of
    # the range; the roundings of ~20 layers before it are of the same order and largely cancel: RMSE
    # <= 2u = 0.1 % of the range, and even a worst pixel whose ~20 roundings all add up stays <= 1 %.
    # A pixel's class flips only where its top two logits are that close: >= 99 % agree.
    fp16 = versus_fp32(out / 'student_test_fp16.onnx')
    assert fp16['depth_rmse'] <= 0.001 * drange, fp16
    assert fp16['depth_max'] <= 0.01 * drange, fp16
    assert fp16['agreement'] >= 0.99, fp16
    # Symmetric INT8 has 255 levels: a step of ~0.8 % of each tensor's range, a rounding error of
    # step / sqrt(12) = 0.23 % per quantized tensor, ~1 % after ~20 of them (random walk). Calibrated on 12
    # synthetic images rather than the robot's camera: allow 3 % of the range, and >= 95 % same class.
    int8 = versus_fp32(out / 'student_test_int8_qdq.onnx')
    assert int8['depth_rmse'] <= 0.03 * drange, int8
    assert int8['agreement'] >= 0.95, int8
    assert int8['depth_rmse'] > fp16['depth_rmse'] > 0, f'INT8 should differ more than FP16: {int8} {fp16}'


def test_int8_is_symmetric_qdq_with_float_output_tail(full_export):
    model = onnx.load(str(full_export[3] / 'student_test_int8_qdq.onnx'))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == 'QuantizeLinear']
    assert len(qs) >= 20, f'expected Q/DQ on most layers, got {len(qs)}'
    for q in qs:
        zero_point = inits[q.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), f'{q.name}: zero point {zero_point}'
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ('Sigmoid', 'Resize') and node.name in ('/Sigmoid', '/Resize_3', '/Resize_4'):
            assert producer[node.input[0]].op_type != 'DequantizeLinear', f'{node.name} must stay unquantized'


def test_engine_plans_find_their_onnx(full_export):
    out = full_export[3]
    for version in ('8.5.2.2', '8.6.1', '10.3.0', '11.0.0'):
        for precision in ('fp32', 'fp16', 'int8'):
            variant = plan_build(version, precision).onnx_variant
            assert (out / f'student_test_{variant}.onnx').is_file(), f'TensorRT {version} {precision}'


def test_random_calibration_is_loud_and_recorded(work, capsys):
    out = work['root'] / 'random'
    code, stdout, stderr = run_cli(capsys, '--checkpoint', work['checkpoint'], '--output-dir', out,
                                   '--precision', 'int8', '--allow-random-calib', '--calib-count', '4',
                                   '--input-size', '32x48', '--skip-trt')
    assert code == 0, stderr
    assert 'WARNING: --allow-random-calib' in stderr and 'uniform noise' in stderr, stderr
    assert '--skip-trt: ONNX artifacts only' in stdout
    assert 'note: exporting at 32x48' in stdout
    spec = metadata(out / 'student_test_int8_qdq.onnx')
    assert spec.calibration.startswith('RANDOM (--allow-random-calib)'), spec.calibration
    assert (spec.height, spec.width) == (32, 48)
    assert not (out / 'student_test_fp16.onnx').exists(), '--precision int8 asks for no FP16 model'
    assert '4 synthetic images, no real images given' in stdout, 'checks without real images must say so'


def test_default_precisions_without_images_skip_int8(work, full_export, capsys):
    out = work['root'] / 'noimages'
    out.mkdir()
    leftover = out / 'student_test_int8_qdq.onnx'
    leftover.write_bytes((full_export[3] / leftover.name).read_bytes())
    code, stdout, stderr = run_cli(capsys, '--checkpoint', work['checkpoint'], '--output-dir', out,
                                   '--input-size', '32x48', '--skip-trt')
    assert code == 0, stderr
    skipped = [line for line in stdout.splitlines() if line.startswith('INT8 skipped')]
    assert len(skipped) == 1 and '--calib-images' in skipped[0], stdout
    assert (out / 'student_test_fp16.onnx').is_file() and (out / 'student_test_fp32.onnx').is_file()
    assert 'note: student_test_int8_qdq.onnx in' in stdout and 'not rewritten by this export' in stdout, \
        'a leftover INT8 model from an earlier export must be pointed out'


# --- bad arguments: one line on stderr, non-zero exit, no traceback ---------------------------------------


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(capsys, '--checkpoint', tmp_path / 'nope.pt', '--output-dir', tmp_path / 'o')
    one_line_error(err, code, 1, 'nope.pt does not exist')
    assert not (tmp_path / 'o').exists(), 'nothing is written for a failed start'


def test_checkpoint_of_another_architecture(work, tmp_path, capsys):
    data = torch.load(work['checkpoint'], weights_only=True)
    data['state_dict'] = StudentNet(StudentConfig(base_channels=8)).state_dict()
    bad = tmp_path / 'other.pt'
    torch.save(data, bad)
    code, _, err = run_cli(capsys, '--checkpoint', bad, '--output-dir', tmp_path / 'o', '--skip-trt')
    one_line_error(err, code, 1, 'other.pt', 'wrong shape', 'encoder.0.0.0.weight (8, 3, 3, 3)')


def test_plain_state_dict_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'weights.pt'
    torch.save(StudentNet(StudentConfig(base_channels=8)).state_dict(), bad)
    code, _, err = run_cli(capsys, '--checkpoint', bad, '--skip-trt', '--output-dir', tmp_path / 'o')
    one_line_error(err, code, 1, 'not an rc_perception student checkpoint')


@pytest.mark.parametrize('size, message', [('abc', 'must be HxW'), ('240x0', 'must be positive'),
                                           ('50x64', 'multiple of the network stride 16')])
def test_bad_input_size(work, tmp_path, capsys, size, message):
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], '--input-size', size, '--skip-trt',
                           '--output-dir', tmp_path / 'o')
    one_line_error(err, code, 2, '--input-size', message)


def test_empty_calibration_folder(work, tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], '--calib-images', tmp_path / 'empty')
    one_line_error(err, code, 1, 'empty holds no images')


def test_calibration_folder_with_other_files(work, tmp_path, capsys):
    folder = tmp_path / 'calib'
    write_image(folder / '0001.png', np.zeros((8, 8, 3), np.uint8))
    (folder / 'notes.txt').write_text('hello')
    (folder / '.DS_Store').write_text('ignored')
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], '--calib-images', folder)
    one_line_error(err, code, 1, 'files that are not images: notes.txt')


def test_calibration_file_that_is_not_an_image(work, tmp_path, capsys):
    folder = tmp_path / 'calib'
    write_image(folder / '0001.png', np.zeros((8, 8, 3), np.uint8))
    (folder / '0002.png').write_text('not a png')
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], '--calib-images', folder, '--skip-trt',
                           '--output-dir', tmp_path / 'o')
    one_line_error(err, code, 1, '0002.png: not an image file')


def test_explicit_int8_without_images_is_refused(work, capsys):
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], '--precision', 'int8')
    one_line_error(err, code, 2, '--precision int8 needs --calib-images')


@pytest.mark.parametrize('flags, message', [(['--precision', 'fp8'], '--precision takes a comma list'),
                                            (['--opset', '11'], '--opset must be 13 to 20'),
                                            (['--calib-count', '0'], '--calib-count must be at least 1')])
def test_other_bad_flags(work, capsys, flags, message):
    code, _, err = run_cli(capsys, '--checkpoint', work['checkpoint'], *flags)
    one_line_error(err, code, 2, message)


def test_console_process_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'rc_offline.export', '--checkpoint',
                             str(tmp_path / 'missing.pt')], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [f'export_trt: error: checkpoint {tmp_path}/missing.pt does '
                                                  'not exist'], result.stderr


def test_from_onnx_needs_tensorrt(full_export, capsys):
    fp32 = full_export[3] / 'student_test_fp32.onnx'
    if tensorrt_version() is not None:
        pytest.skip('tensorrt is installed here')
    code, _, err = run_cli(capsys, '--from-onnx', fp32)
    one_line_error(err, code, 1, 'tensorrt does not import here')


def test_from_onnx_builds_engines_where_tensorrt_imports(full_export, capsys):
    if tensorrt_version() is None:
        pytest.skip('tensorrt not installed')
    from student_trt.engine_sidecar import check_compatibility, detect_gpu, read_sidecar
    out = full_export[3]
    code, stdout, err = run_cli(capsys, '--from-onnx', out / 'student_test_fp32.onnx', '--precision',
                                'fp32,fp16,int8', '--workspace', '256')
    assert code == 0, err
    gpu = detect_gpu() or ('unknown', 'unknown')
    for precision in ('fp32', 'fp16', 'int8'):
        sidecar = read_sidecar(out / f'student_test_{precision}.engine')
        assert sidecar.precision == precision and sidecar.input_shape == (1, 3, H, W)
        onnx_path = out / f'student_test_{plan_build(tensorrt_version(), precision).onnx_variant}.onnx'
        assert check_compatibility(sidecar, tensorrt_version(), gpu[0], gpu[1], onnx_path) == []
    assert (out / 'student_test_timing.cache').is_file()


def test_from_onnx_bad_arguments(full_export, tmp_path, capsys):
    fp32 = full_export[3] / 'student_test_fp32.onnx'
    code, _, err = run_cli(capsys, '--from-onnx', fp32, '--skip-trt')
    one_line_error(err, code, 2, 'leaves nothing to do')
    code, _, err = run_cli(capsys, '--from-onnx', fp32, '--calib-images', tmp_path)
    one_line_error(err, code, 2, '--calib-images applies to --checkpoint exports')
    odd = tmp_path / 'model.onnx'
    odd.write_bytes(fp32.read_bytes())
    code, _, err = run_cli(capsys, '--from-onnx', odd)
    one_line_error(err, code, 1, 'model.onnx is not named like')
    bare = onnx.load(str(fp32))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / 'bare_fp32.onnx'))
    code, _, err = run_cli(capsys, '--from-onnx', tmp_path / 'bare_fp32.onnx')
    one_line_error(err, code, 1, 'has no rc_perception metadata')


def test_checkpoint_and_from_onnx_are_exclusive(capsys):
    with pytest.raises(SystemExit) as info:
        export.main(['--checkpoint', 'a.pt', '--from-onnx', 'b_fp32.onnx'])
    assert info.value.code == 2
    assert 'not allowed with argument' in capsys.readouterr().err


# --- helpers -----------------------------------------------------------------------------------------------


def test_split_images_holds_out_evenly_and_caps_calibration():
    calib, held = export.split_images(100, 40)
    assert len(held) == 16 and len(calib) == 40 and not set(calib) & set(held)
    assert held[0] < 10 and held[-1] > 90, f'held-out images should span the sequence: {held}'
    assert export.split_images(1, 10) == ([0], [0])
    calib, held = export.split_images(3, 10)
    assert len(held) == 1 and sorted(calib + held) == [0, 1, 2]


def test_find_calibration_images_prefers_rgb_subfolder(tmp_path):
    write_image(tmp_path / 'rgb' / 'b.png', np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / 'rgb' / 'a.jpg', np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / 'depth' / 'a.png', np.zeros((4, 4), np.uint16))
    assert [p.name for p in export.find_calibration_images(tmp_path)] == ['a.jpg', 'b.png']
