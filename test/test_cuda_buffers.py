"""The cuda-python wrapper on a real GPU: pinned and device memory, one stream, async copies, CUDA graphs,
errors that name the call. Skipped without cuda-python or a CUDA device (the reason says which).

Imports nothing from ROS, so it runs on a GPU machine without rclpy:
``python3 -m pytest --noconftest test/test_cuda_buffers.py -q`` (test/conftest.py imports rclpy).
"""

from __future__ import annotations

import numpy as np
import pytest

from student_trt import cuda_buffers as cb

pytestmark = pytest.mark.gpu


def _device_or_skip() -> cb.DeviceInfo:
    try:
        return cb.device_info(0)
    except cb.CudaUnavailable as exc:
        pytest.skip(f'needs a CUDA GPU and cuda-python: {exc}')


@pytest.fixture(scope='module')
def device() -> cb.DeviceInfo:
    return _device_or_skip()


@pytest.fixture
def stream(device):
    with cb.Stream() as s:
        yield s


def test_device_info(device):
    assert device.name and device.compute_capability[0] >= 5, device
    assert device.sm == f'{device.compute_capability[0]}.{device.compute_capability[1]}'
    assert device.total_memory > 1 << 30 and device.runtime_version > 11000, device
    print(f'\n{device}')


def test_pinned_buffer_is_a_writable_numpy_view(device):
    with cb.PinnedBuffer((2, 3, 4), np.float16) as buf:
        assert buf.array.shape == (2, 3, 4) and buf.array.dtype == np.float16 and buf.nbytes == 48
        buf.array[...] = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
        assert buf.array[1, 2, 3] == 23
        assert buf.array.ctypes.data == buf.ptr, 'the array must view the pinned allocation itself'
    assert buf.array is None
    buf.free()  # a second free is a no-op
    with pytest.raises(RuntimeError, match='freed'):
        _ = buf.ptr


def test_round_trip_host_device_host(stream):
    data = np.random.default_rng(0).standard_normal((1, 3, 240, 320)).astype(np.float32)
    with cb.HostDeviceBuffer(data.shape, np.float32) as a, cb.HostDeviceBuffer(data.shape, np.float32) as b:
        a.host[...] = data
        a.to_device(stream)
        cb.memcpy_async(b.device_ptr, a.device_ptr, a.nbytes, 'dtod', stream)
        b.to_host(stream)
        stream.synchronize()
        np.testing.assert_array_equal(b.host, data)


def test_copies_on_one_stream_run_in_order(stream):
    """Four frames through one device buffer, enqueued back to back with a single synchronize at the end:
    each read-back sees exactly the frame written just before it."""
    n = 1 << 20  # 4 MiB of float32 per frame: long enough copies for any reordering to show
    frames = [np.full(n, i + 1, np.float32) for i in range(4)]
    pinned_in = [cb.PinnedBuffer((n,), np.float32) for _ in frames]
    pinned_out = [cb.PinnedBuffer((n,), np.float32) for _ in frames]
    device_buf = cb.DeviceBuffer(n * 4)
    try:
        for src, dst, frame in zip(pinned_in, pinned_out, frames, strict=True):
            src.array[...] = frame
            dst.array[...] = -1
        for src, dst in zip(pinned_in, pinned_out, strict=True):
            cb.memcpy_async(device_buf.ptr, src.ptr, n * 4, 'htod', stream)
            cb.memcpy_async(dst.ptr, device_buf.ptr, n * 4, 'dtoh', stream)
        stream.synchronize()
        for i, dst in enumerate(pinned_out):
            assert np.all(dst.array == i + 1), f'frame {i}: expected all {i + 1}, got {np.unique(dst.array)}'
    finally:
        device_buf.free()
        for buf in pinned_in + pinned_out:
            buf.free()


def test_failing_call_raises_with_the_call_name_and_error(device):
    with pytest.raises(cb.CudaError) as info:
        cb.DeviceBuffer(1 << 60)  # an exabyte: cudaMalloc must refuse
    err = info.value
    assert err.call == 'cudaMalloc' and err.error_name == 'cudaErrorMemoryAllocation', str(err)
    assert str(err).startswith('cudaMalloc failed: cudaErrorMemoryAllocation ('), str(err)
    cb.runtime().cudaGetLastError()  # clear the (non-sticky) error
    with pytest.raises(cb.CudaError, match='cudaSetDevice failed: cudaErrorInvalidDevice'):
        cb.set_device(9999)
    cb.runtime().cudaGetLastError()
    with pytest.raises(cb.CudaError, match='cudaMemcpyAsync failed'):
        with cb.Stream() as s:
            cb.call('cudaMemcpyAsync', 0, 0, 16, 'not a kind', s.handle)


def test_closed_stream_is_refused(device):
    s = cb.Stream()
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match='stream is closed'):
        s.synchronize()


def test_graph_replays_a_captured_copy_sequence(stream):
    shape = (1, 3, 240, 320)
    with cb.HostDeviceBuffer(shape) as inp, cb.HostDeviceBuffer(shape) as out, cb.CudaGraph() as graph:
        inp.host[...] = 1.0
        out.host[...] = 0.0
        with graph.capture(stream):
            inp.to_device(stream)
            cb.memcpy_async(out.device_ptr, inp.device_ptr, inp.nbytes, 'dtod', stream)
            out.to_host(stream)
        stream.synchronize()
        assert graph.ready
        assert np.all(out.host == 0.0), 'capturing must not run the work'
        for value in (2.0, 3.5):
            inp.host[...] = value  # same pinned buffer, new content: the graph reads it at launch
            graph.launch(stream)
            stream.synchronize()
            assert np.all(out.host == value), f'expected {value} after replay, got {np.unique(out.host)}'


def test_failed_capture_leaves_the_stream_usable(stream):
    graph = cb.CudaGraph()
    with cb.HostDeviceBuffer((4,)) as buf:
        with pytest.raises(ZeroDivisionError):
            with graph.capture(stream):
                buf.to_device(stream)
                _ = 1 / 0
        assert not graph.ready
        with pytest.raises(RuntimeError, match='not captured'):
            graph.launch(stream)
        buf.host[...] = 7.0
        buf.to_device(stream)
        buf.host[...] = 0.0
        buf.to_host(stream)
        stream.synchronize()
        assert np.all(buf.host == 7.0)
    graph.close()


def test_unknown_copy_kind_is_refused_before_any_cuda_call():
    """Checked in Python first, so it holds (and runs) without cuda-python or a GPU."""
    with pytest.raises(ValueError, match="copy kind must be one of htod, dtoh, dtod, got 'sideways'"):
        cb.memcpy_async(0, 0, 16, 'sideways', stream=None)
