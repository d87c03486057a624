"""CUDA memory, one stream and CUDA graphs through cuda-python's runtime API, every call checked.

What the TensorRT backend needs and nothing more: page-locked (pinned) host buffers viewed as numpy
arrays, device buffers, one non-blocking stream, asynchronous copies on it, and optionally a CUDA graph
captured from a sequence of work on that stream and replayed later. No TensorRT and no ROS here, so the
GPU tests exercise this module on any CUDA machine.

Every runtime call goes through ``call(name, *args)``: a non-success status becomes a ``CudaError``
whose message names the call and the error (``cudaMalloc failed: cudaErrorMemoryAllocation (out of
memory)``). Resources are objects with an explicit ``free()``/``close()`` that are also context managers;
freeing twice is a no-op.

cuda-python is found as ``cuda.bindings.runtime`` (cuda-python >= 12.6, 13.x) or, on older installs such
as JetPack 5's, as ``cuda.cudart``. It is imported on first use; without it ``CudaUnavailable`` says what
to install.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    'CudaError',
    'CudaGraph',
    'CudaUnavailable',
    'DeviceBuffer',
    'DeviceInfo',
    'HostDeviceBuffer',
    'PinnedBuffer',
    'Stream',
    'call',
    'device_info',
    'memcpy_async',
    'runtime',
    'set_device',
]

_runtime: ModuleType | None = None
_import_lock = threading.Lock()


class CudaUnavailable(RuntimeError):
    """cuda-python is not installed, or there is no usable CUDA device (the message says which)."""


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error.

    Attributes:
        call: the runtime function's name, e.g. ``cudaMemcpyAsync``.
        code: the integer ``cudaError_t`` value.
        error_name: e.g. ``cudaErrorInvalidValue``.
    """

    def __init__(self, call: str, code: int, error_name: str, description: str) -> None:
        super().__init__(f'{call} failed: {error_name} ({description})')
        self.call = call
        self.code = code
        self.error_name = error_name


def runtime() -> ModuleType:
    """The cuda-python runtime module (``cuda.bindings.runtime`` or the older ``cuda.cudart``).

    Raises:
        CudaUnavailable: cuda-python is not installed.
    """
    global _runtime
    if _runtime is not None:
        return _runtime
    with _import_lock:
        if _runtime is None:
            try:
                from cuda.bindings import runtime as rt  # cuda-python >= 12.6
            except ImportError:
                try:
                    from cuda import cudart as rt  # cuda-python 11.x / 12.x before 12.6
                except ImportError as exc:
                    raise CudaUnavailable(
                        'cuda-python is not installed: install the one matching your CUDA, e.g. '
                        "'pip install cuda-python==12.*' (JetPack 6) or 'cuda-python==11.8.*' (JetPack 5)"
                    ) from exc
            _runtime = rt
    return _runtime


def _error_text(rt: ModuleType, err: Any) -> tuple[str, str]:
    name = getattr(err, 'name', None) or f'cudaError {int(err)}'
    description = ''
    try:
        status, text = rt.cudaGetErrorString(err)
        if int(status) == 0:
            description = text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # describing an error must never hide it
        pass
    return name, description or 'no description'


def call(name: str, *args: Any) -> Any:
    """Call runtime function ``name`` with ``args``; return its value(s) without the status.

    cuda-python returns ``(status, *values)``: this gives None for no value, the value for one, a tuple
    for several.

    Raises:
        CudaError: the call returned a status other than cudaSuccess, or rejected its arguments.
        CudaUnavailable: cuda-python is not installed.
    """
    rt = runtime()
    try:
        result = getattr(rt, name)(*args)
    except (TypeError, ValueError, OverflowError) as exc:  # the binding refused the arguments
        raise CudaError(name, -1, 'invalid argument', str(exc)) from exc
    status, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(status) != 0:
        error_name, description = _error_text(rt, status)
        raise CudaError(name, int(status), error_name, description)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# ---------------------------------------------------------------------------------------------- device

@dataclass(frozen=True)
class DeviceInfo:
    """What engine compatibility depends on: the GPU's name and compute capability."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int
    runtime_version: int
    driver_version: int

    @property
    def sm(self) -> str:
        """``'8.7'`` for an Orin, ``'9.0'`` for an H100."""
        return f'{self.compute_capability[0]}.{self.compute_capability[1]}'


def device_info(index: int = 0) -> DeviceInfo:
    """Describe CUDA device ``index``.

    Raises:
        CudaUnavailable: cuda-python is missing, there is no driver, or no such device (message says which).
    """
    rt = runtime()
    status, count = rt.cudaGetDeviceCount()
    if int(status) != 0:
        error_name, description = _error_text(rt, status)
        raise CudaUnavailable(f'no usable CUDA device: cudaGetDeviceCount failed: {error_name} '
                              f'({description})')
    if not 0 <= index < count:
        raise CudaUnavailable(f'no CUDA device {index}: {count} device(s) present (indices 0 to '
                              f'{count - 1})' if count else 'no CUDA device present (cudaGetDeviceCount: 0)')
    props = call('cudaGetDeviceProperties', index)
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b'\0', 1)[0].decode(errors='replace')
    return DeviceInfo(index=index, name=str(name).strip(), compute_capability=(int(props.major),
                                                                                int(props.minor)),
                      total_memory=int(props.totalGlobalMem),
                      runtime_version=int(call('cudaRuntimeGetVersion')),
                      driver_version=int(call('cudaDriverGetVersion')))


def set_device(index: int) -> None:
    """Make device ``index`` current for the calling thread (runtime API state is per thread)."""
    call('cudaSetDevice', index)


# --------------------------------------------------------------------------------------------- streams

class Stream:
    """One non-blocking CUDA stream (does not synchronize with the legacy default stream)."""

    def __init__(self) -> None:
        rt = runtime()
        self._handle = call('cudaStreamCreateWithFlags', rt.cudaStreamNonBlocking)

    @property
    def handle(self) -> Any:
        """The ``cudaStream_t`` for cuda-python calls (raises once closed)."""
        if self._handle is None:
            raise RuntimeError('stream is closed')
        return self._handle

    @property
    def ptr(self) -> int:
        """The raw handle as an int, as TensorRT's ``execute_async_v3(stream_handle)`` wants it."""
        return int(self.handle)

    def synchronize(self) -> None:
        call('cudaStreamSynchronize', self.handle)

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            call('cudaStreamDestroy', handle)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- buffers

def _nbytes(shape: Sequence[int], dtype: np.dtype) -> int:
    count = 1
    for dim in shape:
        if int(dim) < 0:
            raise ValueError(f'buffer shape must be fully known, got {tuple(shape)}')
        count *= int(dim)
    return count * np.dtype(dtype).itemsize


class PinnedBuffer:
    """Page-locked host memory seen as a numpy array of ``shape`` and ``dtype`` (``.array``).

    Copies between pinned memory and the device can run asynchronously. ``.array`` is invalid after
    ``free()``: do not keep references to it beyond the buffer's life.
    """

    def __init__(self, shape: Sequence[int], dtype: np.dtype | type = np.float32) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = _nbytes(self.shape, self.dtype)
        rt = runtime()
        self._ptr: int | None = int(call('cudaHostAlloc', max(self.nbytes, 1), rt.cudaHostAllocDefault))
        raw = (ctypes.c_uint8 * max(self.nbytes, 1)).from_address(self._ptr)
        self.array: np.ndarray | None = \
            np.frombuffer(raw, dtype=np.uint8, count=self.nbytes).view(self.dtype).reshape(self.shape)

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise RuntimeError('pinned buffer is freed')
        return self._ptr

    def free(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr, self.array = self._ptr, None, None
            call('cudaFreeHost', ptr)

    def __enter__(self) -> PinnedBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.free()


class DeviceBuffer:
    """``nbytes`` of device memory (``cudaMalloc``); ``.ptr`` is its address."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._ptr: int | None = int(call('cudaMalloc', max(self.nbytes, 1)))

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise RuntimeError('device buffer is freed')
        return self._ptr

    def free(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            call('cudaFree', ptr)

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.free()


_COPY_KINDS = {'htod': 'cudaMemcpyHostToDevice', 'dtoh': 'cudaMemcpyDeviceToHost',
               'dtod': 'cudaMemcpyDeviceToDevice'}


def memcpy_async(dst: int, src: int, nbytes: int, kind: str, stream: Stream) -> None:
    """Enqueue a copy of ``nbytes`` on ``stream``; ``kind`` is 'htod', 'dtoh' or 'dtod'.

    Raises:
        ValueError: another ``kind``.
        CudaError: the runtime refused the copy.
    """
    if kind not in _COPY_KINDS:
        raise ValueError(f"copy kind must be one of {', '.join(_COPY_KINDS)}, got {kind!r}")
    call('cudaMemcpyAsync', dst, src, nbytes, getattr(runtime().cudaMemcpyKind, _COPY_KINDS[kind]),
         stream.handle)


class HostDeviceBuffer:
    """A pinned host array and a device buffer of the same size: one per TensorRT I/O tensor.

    ``host`` is the numpy view to fill (inputs) or read (outputs); ``device_ptr`` goes to
    ``set_tensor_address``; ``to_device``/``to_host`` enqueue the copies on a stream.
    """

    def __init__(self, shape: Sequence[int], dtype: np.dtype | type = np.float32) -> None:
        self._pinned = PinnedBuffer(shape, dtype)
        try:
            self._device = DeviceBuffer(self._pinned.nbytes)
        except BaseException:
            self._pinned.free()
            raise
        self.shape, self.dtype, self.nbytes = self._pinned.shape, self._pinned.dtype, self._pinned.nbytes

    @property
    def host(self) -> np.ndarray:
        array = self._pinned.array
        if array is None:
            raise RuntimeError('buffer is freed')
        return array

    @property
    def device_ptr(self) -> int:
        return self._device.ptr

    def to_device(self, stream: Stream) -> None:
        memcpy_async(self._device.ptr, self._pinned.ptr, self.nbytes, 'htod', stream)

    def to_host(self, stream: Stream) -> None:
        memcpy_async(self._pinned.ptr, self._device.ptr, self.nbytes, 'dtoh', stream)

    def free(self) -> None:
        try:
            self._device.free()
        finally:
            self._pinned.free()

    def __enter__(self) -> HostDeviceBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.free()


# ---------------------------------------------------------------------------------------------- graphs

class CudaGraph:
    """A CUDA graph captured from work enqueued on one stream, replayed with ``launch``.

    Usage::

        graph = CudaGraph()
        with graph.capture(stream):
            buffer.to_device(stream); context.execute_async_v3(stream.ptr); output.to_host(stream)
        graph.launch(stream); stream.synchronize()

    While capturing, the enqueued work does not run; it runs at each ``launch``, with the same pointers
    (so fill the same pinned input buffer before each launch). If capture fails, the stream leaves
    capture mode and the error propagates; the graph stays empty.
    """

    def __init__(self) -> None:
        self._graph: Any = None
        self._exec: Any = None

    @property
    def ready(self) -> bool:
        return self._exec is not None

    @contextmanager
    def capture(self, stream: Stream, mode: str = 'thread_local') -> Iterator[None]:
        """Capture the work enqueued on ``stream`` inside the block.

        Args:
            mode: 'thread_local' (other threads may keep using CUDA meanwhile) or 'global'.
        """
        rt = runtime()
        modes = {'thread_local': rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal,
                 'global': rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal}
        self.close()
        call('cudaStreamBeginCapture', stream.handle, modes[mode])
        try:
            yield
        except BaseException:
            try:
                graph = call('cudaStreamEndCapture', stream.handle)
                if graph is not None:
                    call('cudaGraphDestroy', graph)
            except CudaError:
                pass  # the original error is the one to report
            raise
        self._graph = call('cudaStreamEndCapture', stream.handle)
        self._exec = call('cudaGraphInstantiateWithFlags', self._graph, 0)

    def launch(self, stream: Stream) -> None:
        if self._exec is None:
            raise RuntimeError('CUDA graph was not captured')
        call('cudaGraphLaunch', self._exec, stream.handle)

    def close(self) -> None:
        exec_, graph = self._exec, self._graph
        self._exec = self._graph = None
        try:
            if exec_ is not None:
                call('cudaGraphExecDestroy', exec_)
        finally:
            if graph is not None:
                call('cudaGraphDestroy', graph)

    def __enter__(self) -> CudaGraph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
