"""The engine sidecar: written beside each engine, read back, and checked before deserializing."""

import hashlib
import json
import re
import subprocess
import sys

import pytest

from student_trt.engine_sidecar import (
    SIDECAR_FORMAT,
    EngineSidecar,
    check_compatibility,
    detect_gpu,
    read_sidecar,
    sha256_file,
    sidecar_path,
    version_tuple,
    write_atomically,
    write_sidecar,
)
from student_trt.metadata import ModelSpec


@pytest.fixture
def built(tmp_path):
    """An 'engine' built on an Orin with TensorRT 8.5.2.2 from model_fp32.onnx (bytes stand in for both)."""
    onnx_path = tmp_path / 'model_fp32.onnx'
    onnx_path.write_bytes(b'onnx bytes')
    engine = tmp_path / 'model_fp16.engine'
    engine.write_bytes(b'engine bytes')
    sidecar = EngineSidecar.create(tensorrt_version='8.5.2.2', gpu_name='Orin', compute_capability='8.7',
                                   spec=ModelSpec(precision='fp16'), onnx_path=onnx_path,
                                   build={'flags': ['FP16'], 'strongly_typed': False})
    write_sidecar(engine, sidecar)
    return engine, onnx_path, sidecar


def test_written_beside_engine_and_read_back(built):
    engine, onnx_path, sidecar = built
    path = sidecar_path(engine)
    assert path.name == 'model_fp16.engine.json' and path.is_file()
    data = json.loads(path.read_text())
    for key in ('tensorrt_version', 'gpu_name', 'compute_capability', 'precision', 'input_shape',
                'onnx_sha256', 'build_date', 'spec'):
        assert key in data, f'sidecar lacks {key}: {sorted(data)}'
    assert data['format'] == SIDECAR_FORMAT and data['input_shape'] == [1, 3, 240, 320]
    assert data['onnx_sha256'] == hashlib.sha256(b'onnx bytes').hexdigest()
    assert data['onnx_file'] == 'model_fp32.onnx' and data['precision'] == 'fp16'
    assert data['build_date'].endswith('+00:00'), f"build date must be UTC ISO 8601, got {data['build_date']}"
    back = read_sidecar(engine)
    assert back == sidecar and read_sidecar(path) == sidecar
    assert back.model_spec == ModelSpec(precision='fp16')


def test_compatible_when_everything_matches(built):
    engine, onnx_path, sidecar = built
    assert check_compatibility(sidecar, '8.5.2.2', 'Orin', '8.7', onnx_path) == []
    assert check_compatibility(sidecar, '8.5.2.1', 'Orin', '8.7') == [], 'build number alone does not matter'


@pytest.mark.parametrize('trt, gpu, cc, expect', [
    ('8.6.1', 'Orin', '8.7', ['TensorRT 8.5.2.2', 'TensorRT 8.6.1']),
    ('10.3.0', 'Orin', '8.7', ['TensorRT 10.3.0']),
    ('8.5.2.2', 'NVIDIA H100', '9.0', ['compute capability 8.7 (Orin)', '9.0 (NVIDIA H100)']),
    ('8.5.2.2', 'Xavier', '8.7', ["'Orin'", "'Xavier'"]),
])
def test_each_mismatch_is_named(built, trt, gpu, cc, expect):
    _, _, sidecar = built
    problems = check_compatibility(sidecar, trt, gpu, cc)
    assert len(problems) == 1, f'expected one problem, got {problems}'
    for part in expect:
        assert part in problems[0], f'expected {part!r} in {problems[0]!r}'


def test_stale_or_missing_onnx(built, tmp_path):
    _, onnx_path, sidecar = built
    onnx_path.write_bytes(b're-exported model')
    problems = check_compatibility(sidecar, '8.5.2.2', 'Orin', '8.7', onnx_path)
    assert len(problems) == 1 and 'not the ONNX the engine was built from' in problems[0], problems
    problems = check_compatibility(sidecar, '8.5.2.2', 'Orin', '8.7', tmp_path / 'gone.onnx')
    assert len(problems) == 1 and 'gone.onnx does not exist' in problems[0], problems


def test_everything_wrong_lists_every_problem(built):
    _, _, sidecar = built
    odd = EngineSidecar.from_dict({**sidecar.to_dict(), 'format': 'other/9'})
    assert len(check_compatibility(odd, '10.0.0', 'H100', '9.0')) == 3


def test_unknown_gpu_name_skips_the_name_check(built):
    _, onnx_path, _ = built
    unknown = EngineSidecar.create(tensorrt_version='10.3.0', gpu_name='', compute_capability='8.7',
                                   spec=ModelSpec(), onnx_path=onnx_path)
    assert unknown.gpu_name == 'unknown'
    assert check_compatibility(unknown, '10.3.0', 'Orin', '8.7') == []


def test_read_errors_name_the_file(built, tmp_path):
    engine, _, sidecar = built
    with pytest.raises(FileNotFoundError, match='other.engine.json is missing'):
        read_sidecar(tmp_path / 'other.engine')
    sidecar_path(engine).write_text('{not json')
    with pytest.raises(ValueError, match='model_fp16.engine.json: unreadable sidecar'):
        read_sidecar(engine)
    data = sidecar.to_dict()
    del data['onnx_sha256']
    sidecar_path(engine).write_text(json.dumps({**data, 'colour': 1}))
    with pytest.raises(ValueError, match='missing onnx_sha256; unknown colour'):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({**sidecar.to_dict(), 'precision': 'int4'}))
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, int8, got 'int4'"):
        read_sidecar(engine)


def test_write_atomically_replaces_whole_files_only(tmp_path):
    path = tmp_path / 'sub' / 'model.engine'
    write_atomically(path, b'first')
    write_atomically(path, memoryview(b'second'))  # any buffer, as TensorRT's IHostMemory is
    assert path.read_bytes() == b'second'
    with pytest.raises(TypeError):
        write_atomically(path, 'text is not bytes')  # fails while writing the temporary file
    assert path.read_bytes() == b'second', 'a failed write must leave the old file whole'
    assert [p.name for p in path.parent.iterdir()] == ['model.engine'], 'temporary file left behind'


def test_sha256_of_file(tmp_path):
    path = tmp_path / 'blob'
    path.write_bytes(b'x' * (3 << 20))
    assert sha256_file(path) == hashlib.sha256(b'x' * (3 << 20)).hexdigest()


@pytest.mark.parametrize('text, expected', [('8.5.2.2', (8, 5, 2, 2)), ('10.3.0', (10, 3, 0)),
                                            ('11.0.0b6', (11, 0, 0)), (' 9 ', (9,))])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected


def test_version_tuple_rejects_garbage():
    with pytest.raises(ValueError, match="cannot read a version number from 'abc'"):
        version_tuple('abc')


def test_module_is_pure():
    code = ('import sys, student_trt.engine_sidecar; '
            'bad = [m for m in ("tensorrt", "torch", "onnx", "rclpy") if m in sys.modules]; '
            'print(",".join(bad))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == '', f'engine_sidecar imported {out.stdout.strip()} at module level'


def test_detect_gpu_gives_name_and_major_minor_or_none():
    """With a GPU: its name and compute capability, as the TensorRT backend reads them. Without one
    (cuda-python missing or no device): None, exactly where cuda_buffers says why it cannot see one."""
    from student_trt import cuda_buffers
    gpu = detect_gpu()
    try:
        info = cuda_buffers.device_info(0)
    except cuda_buffers.CudaUnavailable as exc:
        assert gpu is None, f'detect_gpu gave {gpu} although cuda_buffers sees no GPU ({exc})'
        assert 'cuda-python is not installed' in str(exc) or 'CUDA device' in str(exc), str(exc)
        return
    assert gpu == (info.name, info.sm), f'detect_gpu {gpu} differs from the backend view {info}'
    name, capability = gpu
    assert name and name == name.strip() and '\x00' not in name, f'got {name!r}'
    assert re.fullmatch(r'\d+\.\d+', capability), f'compute capability must read like 8.7, got {capability!r}'
