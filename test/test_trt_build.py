"""How engines are built for each TensorRT generation (pure plan, tested everywhere) and the build itself
(only where tensorrt imports)."""

import pytest

from student_trt.metadata import ModelSpec
from student_trt.trt_build import (
    ONNX_VARIANTS,
    BuildPlan,
    TrtBuildError,
    build_engine,
    max_onnx_opset,
    onnx_name,
    plan_build,
    split_onnx_name,
    tensorrt_version,
)

LEGACY = [('8.5.2.2', True, 17), ('8.6.1', True, 17), ('10.0.1', False, 20), ('10.3.0', False, 20),
          ('10.9.0.34', False, 22), ('10.13.2', False, 24)]


@pytest.mark.parametrize('version, explicit_batch, max_opset', LEGACY)
def test_up_to_trt10_builder_flags_and_qdq_onnx(version, explicit_batch, max_opset):
    expected = {
        'fp32': BuildPlan('fp32', 'fp32', (), False, explicit_batch, max_opset),
        'fp16': BuildPlan('fp16', 'fp32', ('FP16',), False, explicit_batch, max_opset),
        'int8': BuildPlan('int8', 'int8_qdq', ('INT8', 'FP16'), False, explicit_batch, max_opset),
    }
    for precision, plan in expected.items():
        assert plan_build(version, precision) == plan, f'TensorRT {version} {precision}'


@pytest.mark.parametrize('version', ['11.0.0', '11.2.1.5', '12.0'])
def test_trt11_strongly_typed_from_typed_onnx(version):
    for precision, variant in (('fp32', 'fp32'), ('fp16', 'fp16'), ('int8', 'int8_qdq')):
        plan = plan_build(version, precision)
        assert plan == BuildPlan(precision, variant, (), True, False, 24), f'TensorRT {version}: {plan}'


def test_no_calibrator_and_no_int8_flag_without_qdq():
    for version in ('8.5.2', '8.6.1', '10.3.0', '11.0.0'):
        for precision in ('fp32', 'fp16', 'int8'):
            plan = plan_build(version, precision)
            assert plan.onnx_variant in ONNX_VARIANTS
            assert ('INT8' in plan.flags) == (precision == 'int8' and not plan.strongly_typed), plan
            if precision == 'int8':
                assert plan.onnx_variant == 'int8_qdq', 'INT8 always comes from the Q/DQ ONNX'


@pytest.mark.parametrize('version, message', [('8.4.3', 'too old: need 8.5'), ('7.1.3', 'too old'),
                                              ('trt', 'cannot read a version')])
def test_unsupported_versions(version, message):
    with pytest.raises(ValueError, match=message):
        plan_build(version, 'fp16')


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, int8, got 'bf16'"):
        plan_build('10.3.0', 'bf16')


def test_max_opset_table():
    assert [max_onnx_opset(v) for v in [(8, 5), (8, 6, 1), (9, 3), (10, 0), (10, 12), (10, 16), (11, 0)]] \
        == [17, 17, 17, 20, 22, 24, 24]


def test_split_onnx_name_inverts_onnx_name():
    for variant in ONNX_VARIANTS:
        assert split_onnx_name(f'exported/{onnx_name("student_demo", variant)}') == ('student_demo', variant)
    assert split_onnx_name('student_int8_qdq.onnx') == ('student', 'int8_qdq'), 'longest variant first'
    for name in ('model.onnx', '_fp32.onnx', 'student_fp32.engine'):
        assert split_onnx_name(name) is None, f'{name} is not <stem>_<variant>.onnx'


def test_without_tensorrt_the_build_says_what_to_install(tmp_path):
    if tensorrt_version() is not None:
        pytest.skip('tensorrt is installed here')
    with pytest.raises(TrtBuildError, match='tensorrt is not installed.*python3-libnvinfer'):
        build_engine(tmp_path / 'm.onnx', tmp_path / 'm.engine', plan_build('10.3.0', 'fp16'), ModelSpec())


# --- real builds: only where tensorrt imports ---------------------------------------------------------


@pytest.fixture(scope='module')
def trt():
    try:
        import tensorrt
    except ImportError:
        pytest.skip('tensorrt not installed')
    return tensorrt


@pytest.fixture(scope='module')
def fp32_onnx(tmp_path_factory, trt):
    torch = pytest.importorskip('torch')
    import onnx

    from rc_offline.export import export_fp32
    from rc_offline.model import StudentConfig, StudentNet
    torch.manual_seed(0)
    spec = ModelSpec(height=64, width=96)
    path = tmp_path_factory.mktemp('trt') / 'student_fp32.onnx'
    onnx.save(export_fp32(StudentNet(StudentConfig(base_channels=8)).eval(), spec, 17), str(path))
    return path, spec


@pytest.mark.gpu
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_build_engine_writes_engine_sidecar_and_cache(trt, fp32_onnx, precision):
    from student_trt.engine_sidecar import check_compatibility, detect_gpu, read_sidecar
    onnx_path, spec = fp32_onnx
    plan = plan_build(trt.__version__, precision)
    if plan.onnx_variant != 'fp32':
        pytest.skip(f'TensorRT {trt.__version__} builds {precision} from the {plan.onnx_variant} ONNX')
    engine = onnx_path.with_name(f'student_{precision}.engine')
    cache = onnx_path.with_name('timing.cache')
    sidecar = build_engine(onnx_path, engine, plan, spec, workspace_mib=256, timing_cache=cache, log=print)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    assert read_sidecar(engine) == sidecar and sidecar.precision == precision
    assert sidecar.input_shape == (1, 3, 64, 96)
    gpu = detect_gpu() or ('unknown', 'unknown')
    assert check_compatibility(sidecar, trt.__version__, gpu[0], gpu[1], onnx_path) == []
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    deserialized = runtime.deserialize_cuda_engine(engine.read_bytes())
    assert deserialized is not None, 'the engine written must deserialize'
    names = {deserialized.get_tensor_name(i) for i in range(deserialized.num_io_tensors)}
    assert names == {spec.input_name, spec.depth_output, spec.seg_output}, names
