"""Message <-> numpy conversion: the only code in the package that touches ``msg.data``.

Reading is zero-copy where the byte order allows: an ``Image`` becomes a read-only ndarray view of the
message buffer that honours ``step`` padding. Writing copies the array once into an ``array.array('B')``
(``frombytes``), which rclpy then hands to the middleware without another Python-level copy.

Errors are ``ImageFormatError`` / ``CloudFormatError`` / ``IntrinsicsError`` (all ``ValueError``), with
messages that name the encoding and the expected versus received sizes, ready to be logged as is.
"""

from __future__ import annotations

import array
import sys
from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from rc_perception.camera import Intrinsics, IntrinsicsError, scale_intrinsics

__all__ = [
    'ENCODINGS',
    'CloudFormatError',
    'ImageFormatError',
    'IntrinsicsError',
    'array_to_image',
    'camera_info_intrinsics',
    'cloud_to_xyz',
    'image_to_array',
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


def _bytes_of(arr: np.ndarray) -> array.array:
    buf = array.array('B')
    buf.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return buf


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


def array_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """Build an Image from an ndarray (H, W) or (H, W, C) whose dtype and channels match ``encoding``.

    Raises:
        ImageFormatError: the encoding is unknown or does not fit the array's dtype or shape.
    """
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageFormatError(
            f"unsupported encoding '{encoding}' (expected one of {', '.join(ENCODINGS)})")
    channels = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if arr.dtype != enc.dtype or channels != enc.channels:
        raise ImageFormatError(
            f"encoding '{encoding}' needs {enc.channels}-channel {enc.dtype} data, "
            f"got array of shape {arr.shape} and dtype {arr.dtype}")
    height, width = arr.shape[:2]
    msg = Image(**_IMAGE_KW)
    if header is not None:
        msg.header = header
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = 1 if _HOST_BIG_ENDIAN else 0
    msg.step = int(width * enc.channels * enc.dtype.itemsize)
    msg.data = _bytes_of(arr)
    return msg


# --------------------------------------------------------------------------------------- point clouds

_XYZ_POINT_STEP = 12


def _xyz_fields() -> list[PointField]:
    return [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, name in enumerate('xyz')]


def xyz_to_cloud(points: np.ndarray, header=None) -> PointCloud2:
    """Build a PointCloud2 with float32 x, y, z fields.

    Args:
        points: (H, W, 3) for an organized cloud (NaN marks invalid points; ``is_dense`` false) or
            (N, 3) for a dense one (every point valid; ``is_dense`` true). Converted to float32.
        header: copied into the message (stamp and frame_id of the source image).
    """
    if points.ndim == 3 and points.shape[2] == 3:
        height, width = points.shape[:2]
        is_dense = False
    elif points.ndim == 2 and points.shape[1] == 3:
        height, width = 1, points.shape[0]
        is_dense = True
    else:
        raise CloudFormatError(f'points must be (H, W, 3) or (N, 3), got shape {points.shape}')
    msg = PointCloud2(**_CLOUD_KW)
    if header is not None:
        msg.header = header
    msg.height = int(height)
    msg.width = int(width)
    msg.fields = _xyz_fields()
    msg.is_bigendian = _HOST_BIG_ENDIAN
    msg.point_step = _XYZ_POINT_STEP
    msg.row_step = _XYZ_POINT_STEP * int(width)
    msg.is_dense = is_dense
    msg.data = _bytes_of(points.astype(np.float32, copy=False))
    return msg


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

def camera_info_intrinsics(info: CameraInfo, width: int, height: int) -> Intrinsics:
    """Pinhole intrinsics of ``info`` for an image of ``width`` x ``height``.

    When the image is an integer-factor resize of the CameraInfo size (either way), K is scaled.

    Raises:
        IntrinsicsError: zero or non-finite focal lengths, a zero-size CameraInfo, or a size that is not
            an integer-factor resize (the message names both sizes).
    """
    k = info.k
    intr = Intrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))
    return scale_intrinsics(intr, (int(info.width), int(info.height)), (int(width), int(height)))
