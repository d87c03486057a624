"""Message <-> numpy conversion: the only code in the package that touches ``msg.data``.

Reading is zero-copy where the byte order allows: an ``Image`` becomes a read-only ndarray view of the
message buffer that honours ``step`` padding; ``cloud_to_xyz`` reads x, y, z of any point layout.

Writing goes through writers that own one message and its payload (an ``array.array('B')`` that the message
holds) and hand out a writable ndarray view of that payload, so a node computes its output straight into
the message and nothing large is allocated per frame: ``ImageWriter`` (any encoding of ``ENCODINGS``, e.g.
32FC1, mono8, rgb8) and ``CloudWriter`` (float32 x, y, z). Reusing the message is safe because rclpy's
``publish()`` converts the Python message into a C message (the payload is copied) and hands that to the
middleware before it returns, on Humble as on Kilted; the next frame may then overwrite the payload.
``array_to_image`` and ``xyz_to_cloud`` build one-off messages through the same writers.

Errors are ``ImageFormatError`` / ``CloudFormatError`` / ``IntrinsicsError`` (all ``ValueError``), with
messages that name the encoding and the expected versus received sizes, ready to be logged as is.
"""

from __future__ import annotations

import array
import ctypes
import os
import sys
from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from rc_perception.camera import Intrinsics, IntrinsicsError, scale_intrinsics

__all__ = [
    'ENCODINGS',
    'CloudFormatError',
    'CloudWriter',
    'ImageFormatError',
    'ImageWriter',
    'IntrinsicsError',
    'array_to_image',
    'camera_info_intrinsics',
    'cloud_to_xyz',
    'image_to_array',
    'keep_payload_memory',
    'xyz_to_cloud',
]


class ImageFormatError(ValueError):
    """An Image message that cannot be read as the encoding it declares."""


class CloudFormatError(ValueError):
    """A PointCloud2 message without readable float32 x, y, z fields."""


class Encoding(NamedTuple):
    dtype: np.dtype
    channels: int


#: Encodings the codecs read and write (sensor_msgs/image_encodings names).
ENCODINGS: dict[str, Encoding] = {
    'rgb8': Encoding(np.dtype(np.uint8), 3),
    'bgr8': Encoding(np.dtype(np.uint8), 3),
    'rgba8': Encoding(np.dtype(np.uint8), 4),
    'bgra8': Encoding(np.dtype(np.uint8), 4),
    'mono8': Encoding(np.dtype(np.uint8), 1),
    '8UC1': Encoding(np.dtype(np.uint8), 1),
    'mono16': Encoding(np.dtype(np.uint16), 1),
    '16UC1': Encoding(np.dtype(np.uint16), 1),
    '32FC1': Encoding(np.dtype(np.float32), 1),
}

_HOST_BIG_ENDIAN = sys.byteorder == 'big'


def _fast_fields(msg_type) -> dict:
    # Kilted's generated setters copy an array.array unless field checking is on; Humble's never copy and
    # do not know the keyword. Ask for checking only where it exists, so assigning data stays copy-free.
    return {'check_fields': True} if '_check_fields' in getattr(msg_type, '__slots__', ()) else {}


_IMAGE_KW = _fast_fields(Image)
_CLOUD_KW = _fast_fields(PointCloud2)
_ZERO_BYTE = array.array('B', b'\0')


def _attach_payload(msg, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Give ``msg`` a zeroed payload of ``nbytes`` and return a writable ``shape`` view of it.

    The view is taken of the object the message holds after assignment, so it is the message's payload
    even where a generated setter copies.
    """
    msg.data = _ZERO_BYTE * nbytes  # one allocation (a repeat of one byte is a memset)
    return np.frombuffer(msg.data, dtype=dtype).reshape(shape)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: What ``keep_payload_memory`` sets: every per-frame buffer up to 32 MB (an organized 1280x720 cloud is
#: 11 MB) comes from malloc's heap, and up to 64 MB of freed heap stays mapped for the next frame.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
_MALLOC_VARIABLES = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_')


def keep_payload_memory() -> str:
    """Make glibc's malloc reuse freed message-sized buffers instead of returning them to the kernel.

    Every frame, rclpy allocates the C copy of each message it publishes or takes (and the Python payload
    of each it receives), as large as the image or cloud, and frees it again. With glibc's defaults such
    buffers are mapped fresh from the kernel and returned on free, so every frame pays a page fault per
    4 KiB page: about half of a cloud node's CPU per frame (benchmarks/bench_pointcloud.py --env shows
    it). Raising the mmap and trim thresholds keeps them in the heap. Call once at process start-up; it
    leaves a process alone where ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is set (the
    user's choice) or where the C library is not glibc. Returns a line saying what it did.
    """
    chosen = [v for v in _MALLOC_VARIABLES if v in os.environ]
    if chosen:
        return f"malloc left to the environment ({', '.join(chosen)} set)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return 'malloc left as is (no mallopt: not glibc)'
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 or \
            mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return 'malloc left as is (mallopt refused the thresholds)'
    return (f'malloc keeps per-frame buffers: mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, '
            f'trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB')


# --------------------------------------------------------------------------------------------- images

def image_to_array(msg: Image) -> np.ndarray:
    """View an Image as an ndarray: (H, W) for one channel, (H, W, C) otherwise.

    The result is a read-only view of ``msg.data`` when the message's byte order is the host's (the
    usual case); a big-endian image on a little-endian host is converted, which copies.

    Raises:
        ImageFormatError: unknown encoding, zero size, a ``step`` too small for the width, or fewer
            bytes than ``step * height``.
    """
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise ImageFormatError(
            f"unsupported encoding '{msg.encoding}' (expected one of {', '.join(ENCODINGS)})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageFormatError(f"image has zero size ({width}x{height}, encoding '{msg.encoding}')")
    row_bytes = width * enc.channels * enc.dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width * bytes per pixel = {width} * "
            f"{enc.channels * enc.dtype.itemsize} = {row_bytes} for encoding '{msg.encoding}'")
    expected = step * height
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if raw.size < expected:
        raise ImageFormatError(
            f"'{msg.encoding}' {width}x{height} image with step {step} needs {expected} bytes, "
            f"got {raw.size}")
    dtype = enc.dtype.newbyteorder('>' if msg.is_bigendian else '<') if enc.dtype.itemsize > 1 \
        else enc.dtype
    shape = (height, width, enc.channels)
    strides = (step, enc.channels * enc.dtype.itemsize, enc.dtype.itemsize)
    view = np.ndarray(shape, dtype=dtype, buffer=raw, offset=0, strides=strides)
    if enc.channels == 1:
        view = view[:, :, 0]
    if enc.dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        view = view.astype(enc.dtype)  # byte swap: the one case that copies
    view.flags.writeable = False
    return view


def _image_encoding(encoding: str) -> Encoding:
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageFormatError(
            f"unsupported encoding '{encoding}' (expected one of {', '.join(ENCODINGS)})")
    return enc


class ImageWriter:
    """One ``Image`` of a fixed encoding whose payload is reused for every frame a publisher sends.

    Per frame, one call: ``pub.publish(writer.write(arr, header))`` copies ``arr`` into the payload, or
    ``out = writer.array(height, width, header)`` hands out the payload as a writable ndarray to compute
    into, then ``pub.publish(writer.msg)``. The payload is allocated again only when the size changes.
    Publish before the next call (see the module docstring); one writer per publisher, used from one
    callback at a time (a node's default, mutually exclusive callback group). The payload is the writer's:
    assigning ``msg.data`` elsewhere would leave the writer filling a buffer the message no longer holds.

    Raises:
        ImageFormatError: an encoding outside ``ENCODINGS``.
    """

    def __init__(self, encoding: str) -> None:
        self._enc = _image_encoding(encoding)
        self.msg = Image(**_IMAGE_KW)
        self.msg.encoding = encoding
        self.msg.is_bigendian = 1 if _HOST_BIG_ENDIAN else 0
        self._view: np.ndarray | None = None

    def array(self, height: int, width: int, header=None) -> np.ndarray:
        """The payload as a writable (H, W) array, or (H, W, C) for several channels; sets the header."""
        channels = self._enc.channels
        shape = (int(height), int(width)) + ((channels,) if channels > 1 else ())
        if self._view is None or self._view.shape != shape:
            row_bytes = shape[1] * channels * self._enc.dtype.itemsize
            self._view = _attach_payload(self.msg, row_bytes * shape[0], self._enc.dtype, shape)
            self.msg.height, self.msg.width, self.msg.step = shape[0], shape[1], row_bytes
        if header is not None:
            self.msg.header = header
        return self._view

    def write(self, arr: np.ndarray, header=None) -> Image:
        """Copy ``arr`` ((H, W) or (H, W, C), the encoding's dtype and channels) into the message.

        Raises:
            ImageFormatError: the array does not fit the encoding.
        """
        enc = self._enc
        channels = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
        if arr.dtype != enc.dtype or channels != enc.channels:
            raise ImageFormatError(
                f"encoding '{self.msg.encoding}' needs {enc.channels}-channel {enc.dtype} data, "
                f"got array of shape {arr.shape} and dtype {arr.dtype}")
        np.copyto(self.array(arr.shape[0], arr.shape[1], header), arr)
        return self.msg


def array_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """A new Image holding a copy of an ndarray (H, W) or (H, W, C) whose dtype and channels match
    ``encoding`` (a one-off message; a publisher that sends every frame should keep an ``ImageWriter``).

    Raises:
        ImageFormatError: the encoding is unknown or does not fit the array's dtype or shape.
    """
    return ImageWriter(encoding).write(arr, header)


# --------------------------------------------------------------------------------------- point clouds

_XYZ_POINT_STEP = 12


class CloudWriter:
    """One ``PointCloud2`` with float32 x, y, z fields whose payload is reused for every frame.

    ``points(shape, header)`` hands out the payload as a writable float32 array to compute into:
    ``(H, W, 3)`` for an organized cloud (NaN marks invalid points; ``is_dense`` false), ``(N, 3)`` for a
    dense one (every point valid; height 1, ``is_dense`` true); then ``pub.publish(writer.msg)``. The payload
    is allocated again only when the shape changes (for a dense cloud, whenever the point count does).
    Publish before the next call (see the module docstring); one writer per publisher, used from one
    callback at a time; the payload is the writer's (do not assign ``msg.data`` elsewhere).
    """

    def __init__(self) -> None:
        self.msg = PointCloud2(**_CLOUD_KW)
        self.msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                           for i, name in enumerate('xyz')]
        self.msg.is_bigendian = _HOST_BIG_ENDIAN
        self.msg.point_step = _XYZ_POINT_STEP
        self._view: np.ndarray | None = None

    def points(self, shape: tuple[int, ...], header=None) -> np.ndarray:
        """The payload as a writable float32 array of ``shape`` ((H, W, 3) or (N, 3)); sets the header.

        Raises:
            CloudFormatError: any other shape.
        """
        shape = tuple(int(n) for n in shape)
        if self._view is None or self._view.shape != shape:
            if len(shape) == 3 and shape[2] == 3:
                height, width, is_dense = shape[0], shape[1], False
            elif len(shape) == 2 and shape[1] == 3:
                height, width, is_dense = 1, shape[0], True
            else:
                raise CloudFormatError(f'points must be (H, W, 3) or (N, 3), got shape {shape}')
            self._view = _attach_payload(self.msg, _XYZ_POINT_STEP * height * width, np.dtype(np.float32),
                                         shape)
            self.msg.height, self.msg.width, self.msg.is_dense = height, width, is_dense
            self.msg.row_step = _XYZ_POINT_STEP * width
        if header is not None:
            self.msg.header = header
        return self._view

    def write(self, points: np.ndarray, header=None) -> PointCloud2:
        """Copy ``points`` ((H, W, 3) or (N, 3), converted to float32) into the message."""
        np.copyto(self.points(points.shape, header), points, casting='same_kind')
        return self.msg


def xyz_to_cloud(points: np.ndarray, header=None) -> PointCloud2:
    """A new PointCloud2 with float32 x, y, z fields holding a copy of ``points`` (a one-off message; a
    publisher that sends every frame should keep a ``CloudWriter``).

    Args:
        points: (H, W, 3) for an organized cloud (NaN marks invalid points; ``is_dense`` false) or
            (N, 3) for a dense one (every point valid; ``is_dense`` true).
        header: copied into the message (stamp and frame_id of the source image).

    Raises:
        CloudFormatError: any other shape.
    """
    return CloudWriter().write(points, header)


def cloud_to_xyz(msg: PointCloud2) -> np.ndarray:
    """Read x, y, z of a PointCloud2 into float32 (H, W, 3) when organized (height > 1), else (N, 3).

    Any point layout works (extra fields, padding, row padding) as long as x, y, z are FLOAT32.
    """
    offsets = {}
    for field in msg.fields:
        if field.name in ('x', 'y', 'z'):
            if field.datatype != PointField.FLOAT32 or field.count != 1:
                raise CloudFormatError(
                    f"field '{field.name}' must be one FLOAT32 (datatype {PointField.FLOAT32}), "
                    f'got datatype {field.datatype} x{field.count}')
            offsets[field.name] = field.offset
    missing = [name for name in 'xyz' if name not in offsets]
    if missing:
        raise CloudFormatError(
            f"cloud lacks field(s) {', '.join(missing)} (has {', '.join(f.name for f in msg.fields)})")
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if point_step < max(offsets.values()) + 4 or row_step < point_step * width:
        raise CloudFormatError(
            f'point_step {point_step} / row_step {row_step} too small for {width} points of fields '
            f'at offsets {offsets}')
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if raw.size < row_step * height:
        raise CloudFormatError(
            f'{width}x{height} cloud with row_step {row_step} needs {row_step * height} bytes, '
            f'got {raw.size}')
    dtype = np.dtype('>f4' if msg.is_bigendian else '<f4')
    out = np.empty((height, width, 3), dtype=np.float32)
    for i, name in enumerate('xyz'):
        out[:, :, i] = np.ndarray((height, width), dtype=dtype, buffer=raw, offset=offsets[name],
                                  strides=(row_step, point_step))
    return out if height > 1 else out.reshape(-1, 3)


# ------------------------------------------------------------------------------------------ intrinsics

def camera_info_intrinsics(info: CameraInfo, width: int, height: int, rectified: bool = False) -> Intrinsics:
    """Pinhole intrinsics of ``info`` for an image of ``width`` x ``height`` resampled from the camera's.

    ``rectified=False``: the camera matrix K, for images on the camera's raw grid (its distortion ``d``
    applies); ``True``: the left 3 x 3 of the projection matrix P, for rectified images (``d`` does not
    apply), as image_geometry reads them. Scaled for any size and aspect (``camera.scale_intrinsics``).

    Raises:
        IntrinsicsError: zero or non-finite focal lengths (an uncalibrated camera), a zero-size
            CameraInfo or image, or a region of interest (not supported; the message says so).
    """
    roi = info.roi
    if roi.width and (roi.x_offset, roi.y_offset, roi.width, roi.height) != (0, 0, info.width, info.height):
        raise IntrinsicsError(
            f'CameraInfo has a region of interest ({roi.width}x{roi.height} at {roi.x_offset}, '
            f'{roi.y_offset} of {info.width}x{info.height}); cropped images are not supported')
    if rectified:
        p = info.p
        intr = Intrinsics(fx=float(p[0]), fy=float(p[5]), cx=float(p[2]), cy=float(p[6]))
    else:
        k = info.k
        intr = Intrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))
    return scale_intrinsics(intr, (int(info.width), int(info.height)), (int(width), int(height)))
