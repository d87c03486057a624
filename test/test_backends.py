"""Backends without ROS: ONNX Runtime against PyTorch and a closed-form model, model errors, the selection
rules, which engine file is loaded, postprocessing."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from student_trt import engine_files, engine_sidecar
from student_trt.backends import (
    BackendError,
    ModelFile,
    ModelOutputs,
    TensorRTProbe,
    open_backend,
    probe_tensorrt_gpu,
    select_backend,
)
from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
from student_trt.backends.tensorrt_backend import TensorRTBackend, tensorrt_status
from student_trt.geometry import frame_geometry
from student_trt.metadata import ModelSpec
from student_trt.postprocess import Postprocessor, StudentImages, nearest_indices, resize_nearest
from student_trt.preprocess import Preprocessor

from student_models import (
    expected_class,
    expected_depth,
    linear_model,
    onnx_without_metadata,
    shared_linear_model,
    student_files,
)

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
    ids = Postprocessor(ort_backend.spec)(out.depth, out.seg_logits).class_ids
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


def test_closed_form_model_gives_its_closed_form(tmp_path):
    """The linear model through the real preprocessing and ONNX Runtime: depth 1 + 2 R / 255, class of the
    dominant channel above 63.75 (else 3), per pixel of an image made of 2x2 blocks."""
    colours = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [30, 40, 50]],
                        [[200, 100, 50], [60, 180, 90]]], np.uint8)
    image = np.repeat(np.repeat(np.tile(colours, (80, 160, 1)), 2, axis=0), 2, axis=1)  # (480, 640, 3)
    with OnnxRuntimeBackend(shared_linear_model(), num_threads=1) as backend:
        out = backend.infer(Preprocessor(backend.spec)(image, 'rgb8'))
    small = image[::2, ::2]
    np.testing.assert_allclose(out.depth[0, 0], expected_depth(small[:, :, 0]), rtol=1e-6)
    np.testing.assert_array_equal(out.seg_logits[0].argmax(axis=0), expected_class(small))
    assert set(np.unique(expected_class(small))) == {0, 1, 2, 3}, 'the colours cover four classes'
    # A model that takes BGR sees the blue channel first.
    with OnnxRuntimeBackend(linear_model(tmp_path, color_order='bgr'), num_threads=1) as backend:
        out = backend.infer(Preprocessor(backend.spec)(image, 'rgb8'))
    np.testing.assert_allclose(out.depth[0, 0], expected_depth(small[:, :, 2]), rtol=1e-6)


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

YES = TensorRTProbe(True, 'TensorRT 10.3.0 on Orin (sm 8.7)')
NO_TRT = TensorRTProbe(False, 'the tensorrt Python module is not installed')
NO_GPU = TensorRTProbe(False, 'no usable CUDA device: cudaErrorNoDevice')


class Probe:
    """Answers one probe result and counts the calls (selection must probe at most once)."""

    def __init__(self, result: TensorRTProbe) -> None:
        self.result, self.calls = result, 0

    def __call__(self) -> TensorRTProbe:
        self.calls += 1
        return self.result


def model(name: str) -> ModelFile:
    return ModelFile(Path('/models') / name, 'engine' if name.endswith(('.engine', '.plan')) else 'onnx')


@pytest.mark.parametrize('requested, name, trt, rebuild, backend, build, reason', [
    ('auto', 'm.onnx', NO_TRT, False, 'onnxruntime', False, 'TensorRT is not usable here'),
    ('auto', 'm.onnx', NO_GPU, False, 'onnxruntime', False, 'cudaErrorNoDevice'),
    ('auto', 'm.onnx', YES, False, 'onnxruntime', False, 'engine would be much faster'),
    ('auto', 'm.onnx', YES, True, 'tensorrt', True, 'building a TensorRT engine from m.onnx'),
    ('auto', 'm.engine', YES, False, 'tensorrt', False, 'TensorRT 10.3.0 on Orin'),
    ('auto', 'm.plan', YES, True, 'tensorrt', False, 'm.plan is a TensorRT engine'),
    ('onnxruntime', 'm.onnx', YES, False, 'onnxruntime', False, 'backend onnxruntime requested'),
    ('onnxruntime', 'm.onnx', NO_TRT, True, 'onnxruntime', False, 'backend onnxruntime requested'),
    ('tensorrt', 'm.engine', YES, False, 'tensorrt', False, 'backend tensorrt requested (TensorRT 10.3.0'),
    ('tensorrt', 'm.engine', YES, True, 'tensorrt', False, 'backend tensorrt requested (TensorRT 10.3.0'),
    ('tensorrt', 'm.onnx', YES, True, 'tensorrt', True, 'building an engine'),
])
def test_selection_rules(requested, name, trt, rebuild, backend, build, reason):
    probe = Probe(trt)
    choice = select_backend(model(name), requested, allow_engine_rebuild=rebuild, probe=probe)
    assert (choice.backend, choice.build_engine) == (backend, build), choice
    assert reason in choice.reason, f'expected {reason!r} in the reason, got {choice.reason!r}'
    expected_calls = 0 if requested == 'onnxruntime' else 1
    assert probe.calls == expected_calls, f'probed {probe.calls} times, expected {expected_calls}'
    assert choice.tensorrt == (None if requested == 'onnxruntime' else trt)


@pytest.mark.parametrize('requested, name, trt, rebuild, message', [
    ('auto', 'm.engine', NO_TRT, False,
     r'/models/m\.engine is a TensorRT engine but TensorRT cannot run here \(the tensorrt Python module '
     r'is not installed\)'),
    ('auto', 'm.engine', NO_GPU, True, 'cudaErrorNoDevice.*set model_path to the ONNX model'),
    ('onnxruntime', 'm.engine', YES, False,
     r'm\.engine is a TensorRT engine, which ONNX Runtime cannot run: set model_path to the ONNX model'),
    ('tensorrt', 'm.engine', NO_TRT, False,
     'backend tensorrt requested for /models/m.engine, but TensorRT cannot run here: the tensorrt Python'),
    ('tensorrt', 'm.onnx', NO_GPU, True, 'TensorRT cannot run here: no usable CUDA device'),
    ('tensorrt', 'm.onnx', YES, False, 'needs a TensorRT engine.*export_trt.*allow_engine_rebuild'),
    ('cuda', 'm.onnx', YES, False, 'backend must be one of auto, onnxruntime, tensorrt'),
])
def test_selection_errors_name_the_file_and_the_fix(requested, name, trt, rebuild, message):
    with pytest.raises(BackendError, match=message):
        select_backend(model(name), requested, allow_engine_rebuild=rebuild, probe=Probe(trt))


def test_every_combination_has_exactly_one_outcome():
    """The table covers each (request, model kind, TensorRT here, rebuild) case: a backend or an error."""
    for requested in ('auto', 'onnxruntime', 'tensorrt'):
        for name in ('m.onnx', 'm.engine'):
            for trt in (YES, NO_TRT):
                for rebuild in (False, True):
                    try:
                        choice = select_backend(model(name), requested, allow_engine_rebuild=rebuild,
                                                probe=Probe(trt))
                    except BackendError as exc:
                        assert '/models/m.' in str(exc), f'the error does not name the file: {exc}'
                    else:
                        assert choice.backend in ('onnxruntime', 'tensorrt') and choice.reason


def test_classify_names_the_file_and_reads_an_engine_sidecar_once(tmp_path):
    with pytest.raises(BackendError, match=r"unknown model type '\.pt'"):
        ModelFile.classify(tmp_path / 'student.pt')
    with pytest.raises(BackendError, match=f'model file not found: {tmp_path / "absent.onnx"}'):
        ModelFile.classify(tmp_path / 'absent.onnx')
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    bare = ModelFile.classify(engine)
    assert (bare.kind, bare.sidecar) == ('engine', None) and 'student_fp16.engine.json is missing' in \
        bare.sidecar_error, bare
    onnx_path = tmp_path / 'exported_fp32.onnx'
    onnx_path.write_bytes(b'model')
    sidecar = engine_sidecar.EngineSidecar.create(tensorrt_version='10.3.0', gpu_name='Orin',
                                                  compute_capability='8.7', spec=ModelSpec(precision='fp16'),
                                                  onnx_path=onnx_path)
    engine_sidecar.write_sidecar(engine, sidecar)
    (tmp_path / 'another_fp32.onnx').write_bytes(b'model')
    described = ModelFile.classify(engine)
    assert described.sidecar == sidecar and described.sidecar_error == ''
    assert described.onnx_hint() == f'e.g. model_path:={onnx_path}', 'the hint follows the sidecar'
    assert bare.onnx_hint() == f'e.g. model_path:={tmp_path / "another_fp32.onnx"}', 'else any ONNX beside it'


def test_open_backend_logs_its_choice_and_the_reason():
    lines = []
    with open_backend(shared_linear_model(), 'auto', num_threads=1, log=lines.append) as backend:
        assert backend.name == 'onnxruntime'
        assert backend.selection_reason in lines[0]
    assert lines[0].startswith('backend onnxruntime: auto: linear_fp32.onnx is an ONNX model'), lines


@pytest.mark.skipif(tensorrt_status()[0], reason='checks the behaviour where tensorrt is not installed')
def test_tensorrt_requested_where_it_is_not_installed(tmp_path):
    ok, why = tensorrt_status()
    assert not ok and why == 'the tensorrt Python module is not installed'
    assert probe_tensorrt_gpu() == (False, why, None)
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    with pytest.raises(BackendError, match='backend tensorrt requested for .*student_fp16.engine, but '
                                           'TensorRT cannot run here'):
        open_backend(engine, 'tensorrt')
    with pytest.raises(BackendError, match='TensorRT is not usable here.*backend:=onnxruntime'):
        TensorRTBackend(engine, None, None)


# ------------------------------------------------------------------------------------- engine files

def test_rebuild_uses_the_onnx_variant_the_new_tensorrt_wants(tmp_path):
    onnx_fp32 = tmp_path / 'student_fp32.onnx'
    onnx_fp32.write_bytes(b'model')
    sidecar = engine_sidecar.EngineSidecar.create(
        tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7',
        spec=ModelSpec(precision='fp16'), onnx_path=onnx_fp32)
    engine = tmp_path / 'student_fp16.engine'
    assert engine_files.rebuild_source(engine, sidecar, 'fp16') == onnx_fp32, 'no fp16 sibling: the recorded'
    (tmp_path / 'student_fp16.onnx').write_bytes(b'typed')
    assert engine_files.rebuild_source(engine, sidecar, 'fp16') == tmp_path / 'student_fp16.onnx'
    assert engine_files.rebuild_source(engine, sidecar, 'fp32') == onnx_fp32
    other = engine_sidecar.EngineSidecar.from_dict({**sidecar.to_dict(), 'onnx_file': 'mine.onnx'})
    assert engine_files.rebuild_source(engine, other, 'fp16') == tmp_path / 'mine.onnx', \
        'a name export_trt did not give has no siblings: the recorded file'


def test_export_stem():
    from student_trt.trt_build import ONNX_VARIANTS, onnx_name
    for variant in ONNX_VARIANTS:
        assert engine_files.export_stem(f'a/{onnx_name("student_demo", variant)}') == 'student_demo', variant
    assert engine_files.export_stem('my_model.onnx') == 'my_model'


@pytest.fixture
def engine_dir(tmp_path):
    """An export folder as export_trt leaves it on a Jetson: the FP32 ONNX, and an FP16 engine (stand-in
    bytes: never deserialized here) whose sidecar says TensorRT 10.3.0 on an Orin (sm 8.7)."""
    onnx_path = tmp_path / 'student_fp32.onnx'
    onnx_path.write_bytes(shared_linear_model().read_bytes())
    engine = tmp_path / 'student_fp16.engine'
    engine.write_bytes(b'\0' * 64)
    sidecar = engine_sidecar.EngineSidecar.create(
        tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7',
        spec=ModelSpec(precision='fp16'), onnx_path=onnx_path)
    engine_sidecar.write_sidecar(engine, sidecar)
    return engine


def check(engine, trt_version, gpu, sm, allow_rebuild):
    return engine_files.check_engine(engine, engine_sidecar.read_sidecar(engine), trt_version, gpu, sm,
                                     allow_rebuild)


def test_check_engine_accepts_a_matching_engine(engine_dir):
    result = check(engine_dir, '10.3.0.26', 'Orin', '8.7', allow_rebuild=False)
    assert result.plan is None and not result.problems and result.sidecar.precision == 'fp16'


@pytest.mark.parametrize('trt_version, gpu, sm, problem', [
    ('10.7.0', 'Orin', '8.7', 'built with TensorRT 10.3.0, this system has TensorRT 10.7.0'),
    ('10.3.0', 'NVIDIA H100 80GB HBM3', '9.0', 'built for compute capability 8.7 (Orin), this GPU is 9.0'),
])
def test_check_engine_mismatch_fails_with_what_to_run(engine_dir, trt_version, gpu, sm, problem):
    with pytest.raises(BackendError) as info:
        check(engine_dir, trt_version, gpu, sm, allow_rebuild=False)
    text = str(info.value)
    command = f'export_trt --from-onnx {engine_dir.parent / "student_fp32.onnx"} --precision fp16'
    for part in (f'{engine_dir} cannot be used here', problem, f'rebuild it on this device with {command}',
                 'allow_engine_rebuild:=true to rebuild it from student_fp32.onnx'):
        assert part in text, f'expected {part!r} in: {text}'


def test_check_engine_plans_a_rebuild_from_the_onnx_beside_it(engine_dir):
    result = check(engine_dir, '10.7.0', 'Orin', '8.7', allow_rebuild=True)
    assert result.source == engine_dir.parent / 'student_fp32.onnx'
    assert (result.plan.precision, result.plan.flags) == ('fp16', ('FP16',)), result.plan
    assert 'TensorRT 10.3.0' in result.problems[0]
    # TensorRT 11 builds FP16 from the FP16-typed export when it is there.
    (engine_dir.parent / 'student_fp16.onnx').write_bytes(b'typed')
    result = check(engine_dir, '11.0.0', 'Orin', '8.7', allow_rebuild=True)
    assert result.source.name == 'student_fp16.onnx' and result.plan.strongly_typed


def test_check_engine_stale_or_missing_onnx(engine_dir):
    onnx_path = engine_dir.parent / 'student_fp32.onnx'
    onnx_path.write_bytes(onnx_path.read_bytes() + b' re-exported')
    with pytest.raises(BackendError, match='is not the ONNX the engine was built from'):
        check(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=False)
    assert check(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=True).source == onnx_path
    onnx_path.unlink()
    assert check(engine_dir, '10.3.0', 'Orin', '8.7', allow_rebuild=False).plan is None, \
        'an engine whose ONNX is gone still loads when TensorRT and GPU match'
    with pytest.raises(BackendError, match='cannot be rebuilt: .*student_fp32.onnx is missing'):
        check(engine_dir, '10.7.0', 'Orin', '8.7', allow_rebuild=True)


def test_engine_of_onnx_reuses_a_matching_engine_and_builds_otherwise(tmp_path):
    onnx_path = linear_model(tmp_path, name='student_fp32.onnx')
    engine = tmp_path / 'student_fp32.engine'
    engine.write_bytes(b'\0' * 64)
    sidecar = engine_sidecar.EngineSidecar.create(tensorrt_version='10.3.0', gpu_name='Orin',
                                                  compute_capability='8.7', spec=ModelSpec(),
                                                  onnx_path=onnx_path)
    engine_sidecar.write_sidecar(engine, sidecar)
    lines = []
    assert engine_files.engine_of_onnx(onnx_path, '10.3.0', 'Orin', '8.7', lines.append) == (engine, sidecar)
    assert lines == ['using student_fp32.engine, built earlier from student_fp32.onnx']
    if tensorrt_status()[0]:
        return  # the rest is about what happens where an engine would be built without TensorRT
    with pytest.raises(BackendError, match=f'building {engine} from {onnx_path} failed: tensorrt is not '
                                           'installed'):
        engine_files.engine_of_onnx(onnx_path, '10.7.0', 'Orin', '8.7', lines.append)
    assert lines[-1].startswith('building student_fp32.engine from student_fp32.onnx with TensorRT 10.7.0')


# ------------------------------------------------------------------------------------ postprocessing

SPEC = ModelSpec(height=6, width=8, class_names=('a', 'b', 'c'))
#: depth 1.0 + row / 10 + column / 100 at model pixel (row, column)
DEPTH = (1.0 + np.arange(6)[:, None] / 10 + np.arange(8)[None, :] / 100).astype(np.float32)[None, None]


def logits_for(ids: np.ndarray) -> np.ndarray:
    """(1, 3, h, w) logits whose argmax is ``ids``: 1 for the class, 0 elsewhere."""
    return (np.arange(3)[:, None, None] == ids[None]).astype(np.float32)[None]


IDS = np.arange(48).reshape(6, 8) % 3


def test_postprocess_depth_and_class_ids():
    depth = DEPTH.copy()
    depth[0, 0, 1, 2] = np.inf
    depth[0, 0, 4, 4] = np.nan
    out = Postprocessor(SPEC)(depth, logits_for(IDS))
    assert out.depth.dtype == np.float32 and out.depth.shape == (6, 8)
    assert np.isnan(out.depth[1, 2]) and np.isnan(out.depth[4, 4]), 'non-finite depth must become NaN'
    finite = np.isfinite(depth[0, 0])
    np.testing.assert_array_equal(out.depth[finite], DEPTH[0, 0][finite])
    assert out.class_ids.dtype == np.uint8
    np.testing.assert_array_equal(out.class_ids, IDS)
    assert depth[0, 0, 1, 2] == np.inf, 'the model output must not be modified in place'


def test_argmax_takes_the_first_of_equal_logits():
    logits = np.zeros((1, 3, 6, 8), np.float32)
    logits[0, 1:, :, 4:] = 2.0  # classes 1 and 2 tie on the right half
    logits[0, 2, 0, 0] = -1.0
    expected = np.zeros((6, 8), np.uint8)
    expected[:, 4:] = 1
    np.testing.assert_array_equal(Postprocessor(SPEC)(DEPTH, logits).class_ids, expected)


def test_postprocess_float16_outputs():
    depth = np.full((1, 1, 6, 8), 2.5, np.float16)
    logits = np.zeros((1, 3, 6, 8), np.float16)
    logits[0, 2] = 1.0
    out = Postprocessor(SPEC)(depth, logits)
    assert out.depth.dtype == np.float32 and np.all(out.depth == 2.5) and np.all(out.class_ids == 2)


def test_postprocess_on_a_camera_grid():
    # An 8x16 camera on the 6x8 model: letterboxed into content rows 1-4 (scale 2); published at the camera's
    # size, published (v, u) takes model pixel (1 + v // 2, u // 2).
    geo = frame_geometry((8, 16), (6, 8), 'input')
    out = Postprocessor(SPEC)(DEPTH, logits_for(IDS), geo)
    v, u = np.mgrid[0:8, 0:16]
    np.testing.assert_array_equal(out.depth, DEPTH[0, 0][1 + v // 2, u // 2])
    np.testing.assert_array_equal(out.class_ids, IDS[1 + v // 2, u // 2])
    # Published at the model grid (the camera decimated by 2: 4x8): model rows 1-4.
    geo = frame_geometry((8, 16), (6, 8), 'model')
    out = Postprocessor(SPEC)(DEPTH, logits_for(IDS), geo)
    assert geo.grid == (4, 8)
    np.testing.assert_array_equal(out.depth, DEPTH[0, 0][1:5])
    np.testing.assert_array_equal(out.class_ids, IDS[1:5])


def test_postprocess_writes_into_the_buffers_given():
    post = Postprocessor(SPEC)
    geo_a, geo_b = frame_geometry((12, 16), (6, 8), 'input'), frame_geometry((8, 16), (6, 8), 'input')
    out = StudentImages.empty(12, 16)
    assert post(DEPTH, logits_for(IDS), geo_a, out=out) is out
    np.testing.assert_array_equal(out.class_ids, IDS[np.arange(12)[:, None] // 2, np.arange(16) // 2])
    with pytest.raises(ValueError, match=r'out must be 16x8 images, got \(16, 12\)'):
        post(DEPTH, logits_for(IDS), geo_b, out=out)


def test_postprocess_allocates_no_large_array():
    spec = ModelSpec()
    post = Postprocessor(spec)
    depth = np.random.default_rng(1).uniform(0.5, 5, (1, 1, 240, 320)).astype(np.float32)
    logits = np.random.default_rng(2).normal(size=(1, 5, 240, 320)).astype(np.float32)
    for camera, output_size in [((480, 640), 'model'), ((360, 640), 'model'), ((480, 848), 'model'),
                                ((480, 640), 'input')]:
        geo = frame_geometry(camera, (240, 320), output_size)
        out = StudentImages.empty(*geo.grid)
        post(depth, logits, geo, out)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            post(depth, logits, geo, out)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak < 128 * 1024, f'{camera} {output_size}: a frame allocated up to {peak} bytes'
        colours = np.empty((*geo.grid, 3), np.uint8)
        post.colourize(out.class_ids, colours)


def test_colourize_uses_the_class_palette_and_black_beyond():
    ids = np.array([[0, 1, 2], [3, 4, 200]], np.uint8)
    rgb = Postprocessor(ModelSpec()).colourize(ids)
    expected = [[[128, 64, 128], [70, 70, 70], [70, 130, 180]], [[220, 20, 60], [250, 170, 30], [0, 0, 0]]]
    np.testing.assert_array_equal(rgb, expected)


def test_resize_nearest_like_torch():
    torch = pytest.importorskip('torch')
    depth = np.random.default_rng(3).uniform(0.5, 5.0, (6, 8)).astype(np.float32)
    for size in [(12, 16), (9, 13), (4, 5), (6, 8)]:
        ref = torch.nn.functional.interpolate(torch.from_numpy(depth)[None, None], size=size,
                                              mode='nearest-exact')
        np.testing.assert_array_equal(resize_nearest(depth, *size), ref[0, 0].numpy(), err_msg=f'size {size}')
    np.testing.assert_array_equal(nearest_indices(3, 6), [0, 0, 1, 1, 2, 2])
    assert resize_nearest(np.zeros((6, 8, 3), np.uint8), 12, 16).shape == (12, 16, 3)
    with pytest.raises(ValueError, match='output size must be positive'):
        resize_nearest(depth, 0, 8)


def test_postprocess_rejects_outputs_that_do_not_match_the_spec():
    post = Postprocessor(SPEC)
    with pytest.raises(ValueError, match=r"'depth' must have shape \(1, 1, 6, 8\), got \(1, 1, 6, 9\)"):
        post(np.zeros((1, 1, 6, 9), np.float32), np.zeros((1, 3, 6, 8), np.float32))
    with pytest.raises(ValueError, match=r"'seg_logits' must have shape \(1, 3, 6, 8\), got \(1, 4, 6, 8\)"):
        post(np.zeros((1, 1, 6, 8), np.float32), np.zeros((1, 4, 6, 8), np.float32))
    with pytest.raises(ValueError, match='at most 255 classes'):
        Postprocessor(ModelSpec(class_names=tuple(f'c{i}' for i in range(256))))


def test_onnxruntime_threads_sleep_between_frames_instead_of_spinning():
    """Spinning intra-op threads cost about four times the CPU of the inference itself at camera rate."""
    with OnnxRuntimeBackend(shared_linear_model()) as backend:
        options = backend._session.get_session_options()
        assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
