"""Backends without ROS: ONNX Runtime against PyTorch, model errors, the selection rules, postprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from student_trt import engine_sidecar
from student_trt.backends import BackendError, ModelOutputs, open_backend, probe_tensorrt_gpu, select_backend
from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
from student_trt.backends.tensorrt_backend import (
    TensorRTBackend,
    check_engine,
    export_stem,
    rebuild_source,
    tensorrt_status,
)
from student_trt.metadata import ModelSpec
from student_trt.postprocess import Postprocessor, nearest_indices, resize_nearest
from student_trt.preprocess import Preprocessor

from student_models import onnx_without_metadata, student_files

RNG = np.random.default_rng(3)


def camera_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A smooth scene with a few boxes (uint8 RGB)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([255 * yy / height, 255 * xx / width, 128 + 0 * xx], axis=2)
    img[height // 4:height // 2, width // 3:width // 2] = (220, 30, 60)
    img[height // 2:, :width // 4] = (20, 200, 90)
    return img.astype(np.uint8)


@pytest.fixture(scope='module')
def ort_backend():
    with OnnxRuntimeBackend(student_files().onnx, num_threads=1) as backend:
        yield backend


# ------------------------------------------------------------------------------------ ONNX Runtime

def test_onnxruntime_matches_pytorch_on_the_same_image(ort_backend):
    torch = pytest.importorskip('torch')
    from rc_offline.checkpoint import load_checkpoint
    model, spec = load_checkpoint(student_files().checkpoint)
    model.eval()
    x = Preprocessor(ort_backend.spec)(camera_image(), 'rgb8')
    with torch.no_grad():
        ref_depth, ref_seg = (t.numpy() for t in model(torch.from_numpy(x)))
    out = ort_backend.infer(x)
    assert isinstance(out, ModelOutputs)
    assert out.depth.shape == (1, 1, 240, 320) and out.seg_logits.shape == (1, 5, 240, 320), \
        f'expected (1, 1, 240, 320) and (1, 5, 240, 320), got {out.depth.shape} and {out.seg_logits.shape}'
    depth_err = float(np.max(np.abs(out.depth - ref_depth)))
    seg_err = float(np.max(np.abs(out.seg_logits - ref_seg)))
    assert depth_err < 1e-4, f'depth differs from PyTorch by up to {depth_err} m (expected < 1e-4)'
    assert seg_err < 1e-4 * max(1.0, float(np.abs(ref_seg).max())), f'logits differ by up to {seg_err}'
    assert spec.depth_min <= out.depth.min() and out.depth.max() <= spec.depth_max
    # Class ids agree wherever the top two logits are not within rounding of each other.
    ids = Postprocessor(ort_backend.spec).class_ids(out.seg_logits)
    top2 = np.sort(ref_seg[0], axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    np.testing.assert_array_equal(ids[clear], ref_seg[0].argmax(axis=0)[clear])
    assert len(np.unique(ids)) > 1, 'expected more than one class on a scene with boxes'


def test_spec_comes_from_the_model_metadata(ort_backend):
    spec = ort_backend.spec
    assert (spec.height, spec.width, spec.input_name) == (240, 320, 'rgb')
    assert spec.class_names == ModelSpec().class_names and spec.precision == 'fp32'
    assert spec.extra.get('checkpoint') == 'student.pt', f'expected export provenance, got {spec.extra}'
    assert 'intra-op threads 1' in ort_backend.description, ort_backend.description


def test_wrong_input_is_refused(ort_backend):
    with pytest.raises(ValueError, match=r'float32 \(1, 3, 240, 320\), got float32 \(1, 3, 120, 160\)'):
        ort_backend.infer(np.zeros((1, 3, 120, 160), np.float32))
    with pytest.raises(ValueError, match='got float64'):
        ort_backend.infer(np.zeros((1, 3, 240, 320)))


def test_warmup_returns_latencies(ort_backend):
    latencies = ort_backend.warmup(2)
    assert len(latencies) == 2 and all(t > 0 for t in latencies), latencies


def test_missing_corrupt_and_unlabelled_models_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / 'nothing_here.onnx'
    with pytest.raises(BackendError, match=f'model file not found: {missing}.*export_trt'):
        open_backend(missing)
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'this is not a protobuf' * 50)
    with pytest.raises(BackendError, match=f'cannot load {corrupt} with ONNX Runtime.*export it again'):
        open_backend(corrupt)
    bare = onnx_without_metadata(tmp_path)
    with pytest.raises(BackendError, match=f'{bare} has no rc_perception metadata: export it with '
                                           'export_trt'):
        open_backend(bare)
    with pytest.raises(BackendError, match=r"unknown model type '\.pt'"):
        open_backend(student_files().checkpoint)


def test_spec_is_read_from_the_onnx_file_or_the_file_is_named(tmp_path):
    assert ModelSpec.from_onnx_file(student_files().onnx) == OnnxRuntimeBackend(student_files().onnx).spec
    corrupt = tmp_path / 'corrupt_fp32.onnx'
    corrupt.write_bytes(b'this is not a protobuf' * 50)
    with pytest.raises(ValueError, match=f'{corrupt} cannot be read as an ONNX model'):
        ModelSpec.from_onnx_file(corrupt)
    with pytest.raises(ValueError, match=f'{tmp_path / "absent.onnx"} does not exist'):
        ModelSpec.from_onnx_file(tmp_path / 'absent.onnx')
    with pytest.raises(ValueError, match='has no rc_perception metadata'):
        ModelSpec.from_onnx_file(onnx_without_metadata(tmp_path))


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path):
    import onnx
    model = onnx.load(str(student_files().onnx))
    spec = ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})
    wrong = spec.with_(input_name='image', height=480, width=640)
    del model.metadata_props[:]
    for key, value in wrong.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / 'wrong_metadata.onnx'
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="does not match its own rc_perception metadata: input 'image' is "
                                           'missing'):
        OnnxRuntimeBackend(path)


# ------------------------------------------------------------------------------------ selection rules

YES_TRT, NO_TRT = (True, 'TensorRT 10.3.0'), (False, 'the tensorrt Python module is not installed')
YES_GPU, NO_GPU = (True, 'Orin (sm 8.7)'), (False, 'no usable CUDA device: cudaErrorNoDevice')


@pytest.mark.parametrize('requested, model, trt, gpu, rebuild, backend, build, reason', [
    ('auto', 'm.onnx', NO_TRT, NO_GPU, False, 'onnxruntime', False, 'TensorRT is not usable here'),
    ('auto', 'm.onnx', YES_TRT, NO_GPU, False, 'onnxruntime', False, 'cudaErrorNoDevice'),
    ('auto', 'm.onnx', YES_TRT, YES_GPU, False, 'onnxruntime', False, 'engine would be much faster'),
    ('auto', 'm.onnx', YES_TRT, YES_GPU, True, 'tensorrt', True, 'building a TensorRT engine'),
    ('auto', 'm.engine', YES_TRT, YES_GPU, False, 'tensorrt', False, 'TensorRT 10.3.0 on Orin'),
    ('auto', 'm.plan', YES_TRT, YES_GPU, True, 'tensorrt', False, 'is a TensorRT engine'),
    ('onnxruntime', 'm.onnx', YES_TRT, YES_GPU, False, 'onnxruntime', False, 'requested'),
    ('tensorrt', 'm.engine', YES_TRT, YES_GPU, False, 'tensorrt', False, 'requested'),
    ('tensorrt', 'm.onnx', YES_TRT, YES_GPU, True, 'tensorrt', True, 'building an engine'),
])
def test_selection_rules(requested, model, trt, gpu, rebuild, backend, build, reason):
    choice = select_backend(model, requested, allow_engine_rebuild=rebuild, tensorrt=trt, gpu=gpu)
    assert (choice.backend, choice.build_engine) == (backend, build), choice
    assert reason in choice.reason, f'expected {reason!r} in the reason, got {choice.reason!r}'


@pytest.mark.parametrize('requested, model, trt, gpu, rebuild, message', [
    ('auto', 'm.engine', NO_TRT, YES_GPU, False,
     r'm\.engine is a TensorRT engine but TensorRT cannot run here'),
    ('auto', 'm.engine', YES_TRT, NO_GPU, True, 'cudaErrorNoDevice.*set model_path to the ONNX model'),
    ('onnxruntime', 'm.engine', YES_TRT, YES_GPU, False,
     r'm\.engine is a TensorRT engine, which ONNX Runtime cannot run: set model_path to the ONNX model'),
    ('tensorrt', 'm.engine', NO_TRT, YES_GPU, False,
     'backend tensorrt requested for m.engine, but TensorRT cannot run here: the tensorrt Python module'),
    ('tensorrt', 'm.onnx', YES_TRT, YES_GPU, False,
     'needs a TensorRT engine.*export_trt.*allow_engine_rebuild'),
    ('cuda', 'm.onnx', YES_TRT, YES_GPU, False, 'backend must be one of auto, onnxruntime, tensorrt'),
    ('auto', 'm.pt', YES_TRT, YES_GPU, False, r"unknown model type '\.pt'"),
])
def test_selection_errors_name_the_file_and_the_fix(requested, model, trt, gpu, rebuild, message):
    with pytest.raises(BackendError, match=message):
        select_backend(model, requested, allow_engine_rebuild=rebuild, tensorrt=trt, gpu=gpu)


def test_probe_tensorrt_gpu_combines_both_and_says_what_is_missing():
    assert probe_tensorrt_gpu(YES_TRT, YES_GPU) == (True, 'TensorRT 10.3.0 on Orin (sm 8.7)')
    assert probe_tensorrt_gpu(NO_TRT, YES_GPU) == NO_TRT
    assert probe_tensorrt_gpu(YES_TRT, NO_GPU) == NO_GPU


def test_engine_error_points_at_the_onnx_beside_it(tmp_path):
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    (tmp_path / 'student_fp32.onnx').write_bytes(b'')
    with pytest.raises(BackendError, match=f'model_path:={tmp_path / "student_fp32.onnx"}'):
        select_backend(engine, 'onnxruntime')


def test_open_backend_logs_its_choice_and_the_reason():
    lines = []
    with open_backend(student_files().onnx, 'auto', num_threads=1, log=lines.append) as backend:
        assert backend.name == 'onnxruntime'
        assert backend.selection_reason in lines[0]
    assert lines[0].startswith('backend onnxruntime: auto: student_fp32.onnx is an ONNX model'), lines


@pytest.mark.skipif(tensorrt_status()[0], reason='checks the behaviour where tensorrt is not installed')
def test_tensorrt_requested_where_it_is_not_installed(tmp_path):
    ok, why = tensorrt_status()
    assert not ok and 'tensorrt' in why
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    with pytest.raises(BackendError, match='backend tensorrt requested for .*student_fp16.engine, but '
                                           'TensorRT cannot run here'):
        open_backend(engine, 'tensorrt')
    with pytest.raises(BackendError, match='TensorRT is not usable here'):
        TensorRTBackend(engine)


def test_rebuild_uses_the_onnx_variant_the_new_tensorrt_wants(tmp_path):
    onnx_fp32 = tmp_path / 'student_fp32.onnx'
    onnx_fp32.write_bytes(b'model')
    sidecar = engine_sidecar.EngineSidecar.create(
        tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7',
        spec=ModelSpec(precision='fp16'), onnx_path=onnx_fp32)
    engine = tmp_path / 'student_fp16.engine'
    assert rebuild_source(engine, sidecar, 'fp16') == onnx_fp32, 'no fp16 sibling: the recorded ONNX'
    (tmp_path / 'student_fp16.onnx').write_bytes(b'typed')
    assert rebuild_source(engine, sidecar, 'fp16') == tmp_path / 'student_fp16.onnx'
    assert rebuild_source(engine, sidecar, 'fp32') == onnx_fp32
    json.loads(json.dumps(sidecar.to_dict()))  # what the backend reads is plain JSON


def test_export_stem():
    from student_trt.trt_build import ONNX_VARIANTS, onnx_name
    for variant in ONNX_VARIANTS:
        assert export_stem(f'a/{onnx_name("student_demo", variant)}') == 'student_demo', variant
    assert export_stem('my_model.onnx') == 'my_model'


@pytest.fixture
def engine_dir(tmp_path):
    """An export folder as export_trt leaves it on a Jetson: the FP32 ONNX, and an FP16 engine (stand-in
    bytes: never deserialized here) whose sidecar says TensorRT 10.3.0 on an Orin (sm 8.7)."""
    onnx_path = tmp_path / 'student_fp32.onnx'
    onnx_path.write_bytes(student_files().onnx.read_bytes())
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    sidecar = engine_sidecar.EngineSidecar.create(
        tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7',
        spec=ModelSpec(precision='fp16'), onnx_path=onnx_path)
    engine_sidecar.write_sidecar(engine, sidecar)
    return engine


def test_check_engine_accepts_a_matching_engine(engine_dir):
    check = check_engine(engine_dir, '10.3.0.26', 'Orin', '8.7', allow_rebuild=False)
    assert check.plan is None and not check.problems and check.sidecar.precision == 'fp16'


@pytest.mark.parametrize('trt_version, gpu, sm, problem', [
    ('10.7.0', 'Orin', '8.7', 'built with TensorRT 10.3.0, this system has TensorRT 10.7.0'),
    ('10.3.0', 'NVIDIA H100 80GB HBM3', '9.0', 'built for compute capability 8.7 (Orin), this GPU is 9.0'),
])
def test_check_engine_mismatch_fails_with_what_to_run(engine_dir, trt_version, gpu, sm, problem):
    with pytest.raises(BackendError) as info:
        check_engine(engine_dir, trt_version, gpu, sm, allow_rebuild=False)
    text = str(info.value)
    command = f'export_trt --from-onnx {engine_dir.parent / "student_fp32.onnx"} --precision fp16'
    for part in (f'{engine_dir} cannot be used here', problem, f'rebuild it on this device with {command}',
                 'allow_engine_rebuild:=true to rebuild it from student_fp32.onnx'):
        assert part in text, f'expected {part!r} in: {text}'


def test_check_engine_plans_a_rebuild_from_the_onnx_beside_it(engine_dir):
    check = check_engine(engine_dir, '10.7.0', 'Orin', '8.7', allow_rebuild=True)
    assert check.source == engine_dir.parent / 'student_fp32.onnx'
    assert (check.plan.precision, check.plan.flags) == ('fp16', ('FP16',)), check.plan
    assert 'TensorRT 10.3.0' in check.problems[0]
    # TensorRT 11 builds FP16 from the FP16-typed export when it is there.
    (engine_dir.parent / 'student_fp16.onnx').write_bytes(b'typed')
    check = check_engine(engine_dir, '11.0.0', 'Orin', '8.7', allow_rebuild=True)
    assert check.source.name == 'student_fp16.onnx' and check.plan.strongly_typed


def test_check_engine_stale_or_missing_onnx(engine_dir):
    onnx_path = engine_dir.parent / 'student_fp32.onnx'
    onnx_path.write_bytes(onnx_path.read_bytes() + b' re-exported')
    with pytest.raises(BackendError, match='is not the ONNX the engine was built from'):
        check_engine(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=False)
    assert check_engine(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=True).source == onnx_path
    onnx_path.unlink()
    assert check_engine(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=False).plan is None, \
        'an engine whose ONNX is gone still loads when TensorRT and GPU match'
    with pytest.raises(BackendError, match='cannot be rebuilt: .*student_fp32.onnx is missing'):
        check_engine(engine_dir, '10.7.0', 'Orin', '8.7', allow_rebuild=True)


def test_check_engine_without_sidecar(tmp_path):
    engine = tmp_path / 'bare.engine'
    engine.write_bytes(b'\0')
    with pytest.raises(BackendError, match=r'bare\.engine\.json is missing.*export_trt --checkpoint'):
        check_engine(engine, '10.3.0', 'Orin', '8.7', allow_rebuild=True)


# ------------------------------------------------------------------------------------ postprocessing

SPEC = ModelSpec(height=6, width=8, class_names=('a', 'b', 'c'))


def test_postprocess_depth_and_class_ids():
    depth = RNG.uniform(0.5, 5.0, (1, 1, 6, 8)).astype(np.float32)
    depth[0, 0, 1, 2] = np.inf
    logits = RNG.normal(size=(1, 3, 6, 8)).astype(np.float32)
    out = Postprocessor(SPEC)(depth, logits)
    assert out.depth.dtype == np.float32 and out.depth.shape == (6, 8)
    assert np.isnan(out.depth[1, 2]), 'non-finite depth must become NaN (REP 118)'
    np.testing.assert_array_equal(np.delete(out.depth.ravel(), 10), np.delete(depth.ravel(), 10))
    assert out.class_ids.dtype == np.uint8
    np.testing.assert_array_equal(out.class_ids, logits[0].argmax(axis=0))
    assert depth[0, 0, 1, 2] == np.inf, 'the model output must not be modified in place'


def test_postprocess_float16_outputs():
    depth = np.full((1, 1, 6, 8), 2.5, np.float16)
    logits = np.zeros((1, 3, 6, 8), np.float16)
    logits[0, 2] = 1.0
    out = Postprocessor(SPEC)(depth, logits)
    assert out.depth.dtype == np.float32 and np.all(out.depth == 2.5) and np.all(out.class_ids == 2)


def test_postprocess_resizes_by_nearest_neighbour_like_torch():
    torch = pytest.importorskip('torch')
    depth = RNG.uniform(0.5, 5.0, (1, 1, 6, 8)).astype(np.float32)
    logits = RNG.normal(size=(1, 3, 6, 8)).astype(np.float32)
    post = Postprocessor(SPEC)
    small = post(depth, logits)
    for size in [(12, 16), (9, 13), (4, 5), (6, 8)]:
        big = post(depth, logits, size)
        ref = torch.nn.functional.interpolate(torch.from_numpy(depth), size=size, mode='nearest-exact')
        np.testing.assert_array_equal(big.depth, ref[0, 0].numpy(), err_msg=f'size {size}')
        ids = torch.from_numpy(small.class_ids[None, None].astype(np.float32))
        ref_ids = torch.nn.functional.interpolate(ids, size=size, mode='nearest-exact')
        np.testing.assert_array_equal(big.class_ids, ref_ids[0, 0].numpy().astype(np.uint8))
    np.testing.assert_array_equal(post(depth, logits, (12, 16)).class_ids[::2, ::2], small.class_ids)
    np.testing.assert_array_equal(nearest_indices(3, 6), [0, 0, 1, 1, 2, 2])
    assert resize_nearest(np.zeros((6, 8, 3), np.uint8), 12, 16).shape == (12, 16, 3)


def test_postprocess_rejects_outputs_that_do_not_match_the_spec():
    post = Postprocessor(SPEC)
    with pytest.raises(ValueError, match=r"'depth' must have shape \(1, 1, 6, 8\), got \(1, 1, 6, 9\)"):
        post(np.zeros((1, 1, 6, 9), np.float32), np.zeros((1, 3, 6, 8), np.float32))
    with pytest.raises(ValueError, match=r"'seg_logits' must have shape \(1, 3, 6, 8\), got \(1, 4, 6, 8\)"):
        post(np.zeros((1, 1, 6, 8), np.float32), np.zeros((1, 4, 6, 8), np.float32))
    with pytest.raises(ValueError, match='output size must be positive'):
        post(np.zeros((1, 1, 6, 8), np.float32), np.zeros((1, 3, 6, 8), np.float32), (0, 8))
    with pytest.raises(ValueError, match='at most 255 classes'):
        Postprocessor(ModelSpec(class_names=tuple(f'c{i}' for i in range(256))))
