"""Message codecs: Image, PointCloud2 and CameraInfo <-> numpy."""

import array
import sys

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from rc_perception import codecs
from rc_perception.camera import Intrinsics

RNG = np.random.default_rng(0)

SAMPLES = {
    'rgb8': RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8),
    'bgr8': RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8),
    'mono8': RNG.integers(0, 256, (4, 5), dtype=np.uint8),
    'mono16': RNG.integers(0, 65536, (4, 5), dtype=np.uint16),
    '16UC1': RNG.integers(0, 65536, (4, 5), dtype=np.uint16),
    '32FC1': RNG.random((4, 5), dtype=np.float32),
}


def raw_image(arr: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image built by hand (not through the codec), with ``pad`` bytes of row padding."""
    data = arr.astype(arr.dtype.newbyteorder('>' if big_endian else '<'))
    rows = data.reshape(arr.shape[0], -1).view(np.uint8)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = array.array('B', padded.tobytes())
    return msg


@pytest.mark.parametrize('encoding', SAMPLES)
def test_image_round_trip(encoding):
    arr = SAMPLES[encoding]
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = codecs.array_to_image(arr, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (4, 5, encoding)
    assert msg.step == arr[0].nbytes
    assert msg.header.frame_id == 'cam' and msg.header.stamp.nanosec == 345
    back = codecs.image_to_array(msg)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize('encoding', SAMPLES)
def test_read_honours_step_padding(encoding):
    arr = SAMPLES[encoding]
    msg = raw_image(arr, encoding, pad=7)
    np.testing.assert_array_equal(codecs.image_to_array(msg), arr)


def test_read_is_a_read_only_view_without_copy():
    arr = SAMPLES['32FC1']
    msg = codecs.array_to_image(arr, '32FC1')
    view = codecs.image_to_array(msg)
    assert not view.flags.writeable
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize('encoding', ['mono16', '16UC1', '32FC1'])
def test_read_converts_foreign_byte_order(encoding):
    arr = SAMPLES[encoding]
    msg = raw_image(arr, encoding, big_endian=sys.byteorder == 'little')
    back = codecs.image_to_array(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_truncated_data_names_expected_and_actual_bytes():
    msg = raw_image(SAMPLES['32FC1'], '32FC1')
    msg.data = msg.data[:-3]
    expected = r"'32FC1' 5x4 image with step 20 needs 80 bytes, got 77"
    with pytest.raises(codecs.ImageFormatError, match=expected):
        codecs.image_to_array(msg)


def test_unknown_encoding_zero_size_and_small_step_are_named():
    msg = raw_image(SAMPLES['mono8'], 'yuv422')
    with pytest.raises(codecs.ImageFormatError, match="unsupported encoding 'yuv422'"):
        codecs.image_to_array(msg)
    empty = Image(height=0, width=5, encoding='mono8', step=5)
    with pytest.raises(codecs.ImageFormatError, match='zero size'):
        codecs.image_to_array(empty)
    small = raw_image(SAMPLES['32FC1'], '32FC1')
    small.step = 8
    with pytest.raises(codecs.ImageFormatError, match=r'step 8 is smaller than .* = 20'):
        codecs.image_to_array(small)


def test_write_rejects_array_that_does_not_fit_encoding():
    with pytest.raises(codecs.ImageFormatError, match="'32FC1' needs 1-channel float32 data"):
        codecs.array_to_image(SAMPLES['16UC1'], '32FC1')
    with pytest.raises(codecs.ImageFormatError, match="'rgb8' needs 3-channel uint8"):
        codecs.array_to_image(SAMPLES['mono8'], 'rgb8')


def test_write_accepts_non_contiguous_arrays():
    arr = SAMPLES['rgb8'][:, ::2]
    np.testing.assert_array_equal(codecs.image_to_array(codecs.array_to_image(arr, 'rgb8')), arr)


def test_organized_cloud_round_trip():
    pts = RNG.random((3, 4, 3), dtype=np.float32)
    pts[1, 2] = np.nan
    msg = codecs.xyz_to_cloud(pts, Header(frame_id='optical'))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 12, 48)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ('x', 0, PointField.FLOAT32), ('y', 4, PointField.FLOAT32), ('z', 8, PointField.FLOAT32)]
    assert msg.is_dense is False and msg.header.frame_id == 'optical'
    np.testing.assert_array_equal(codecs.cloud_to_xyz(msg), pts)


def test_dense_cloud_round_trip():
    pts = RNG.random((10, 3), dtype=np.float32)
    msg = codecs.xyz_to_cloud(pts)
    assert (msg.height, msg.width, msg.is_dense) == (1, 10, True)
    np.testing.assert_array_equal(codecs.cloud_to_xyz(msg), pts)


def test_cloud_reader_handles_foreign_layouts():
    """x, y, z among other fields, with padding: the layout of e.g. an XYZRGB cloud."""
    n = 6
    dt = np.dtype({'names': ['x', 'y', 'z', 'rgb'], 'formats': ['<f4'] * 4,
                   'offsets': [0, 4, 8, 16], 'itemsize': 32})
    rec = np.zeros(n, dtype=dt)
    xyz = RNG.random((n, 3), dtype=np.float32)
    rec['x'], rec['y'], rec['z'] = xyz.T
    msg = PointCloud2(height=1, width=n, point_step=32, row_step=32 * n, is_bigendian=False)
    msg.fields = [PointField(name=c, offset=o, datatype=PointField.FLOAT32, count=1)
                  for c, o in (('x', 0), ('y', 4), ('z', 8), ('rgb', 16))]
    msg.data = array.array('B', rec.tobytes())
    np.testing.assert_array_equal(codecs.cloud_to_xyz(msg), xyz)
    msg.fields = msg.fields[:2]
    with pytest.raises(codecs.CloudFormatError, match='lacks field'):
        codecs.cloud_to_xyz(msg)


def test_cloud_rejects_wrong_shape():
    with pytest.raises(codecs.CloudFormatError, match=r'\(H, W, 3\) or \(N, 3\)'):
        codecs.xyz_to_cloud(np.zeros((4, 2), np.float32))


def camera_info(width=640, height=480, fx=500.0, fy=510.0, cx=319.5, cy=239.5) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return info


def test_camera_info_same_size():
    assert codecs.camera_info_intrinsics(camera_info(), 640, 480) == Intrinsics(500.0, 510.0, 319.5, 239.5)


def test_camera_info_scaled_for_integer_resize():
    # Half size: grid pixel j sits at camera pixel 2j + 1, so cx' = (319.5 - 1) / 2 = 159.25.
    half = codecs.camera_info_intrinsics(camera_info(), 320, 240)
    assert half == Intrinsics(250.0, 255.0, 159.25, 119.25)
    # Double size: pixel j sits at camera coordinate j / 2 - 0.25, so cx' = (159.5 + 0.25) * 2 = 319.5.
    double = codecs.camera_info_intrinsics(camera_info(width=320, height=240, fx=250, fy=255, cx=159.5,
                                                       cy=119.5), 640, 480)
    assert double == Intrinsics(500.0, 510.0, 319.5, 239.5)


def test_camera_info_scaled_for_any_size_and_aspect():
    """A 16:9 grid from a 4:3 CameraInfo (an aspect change) scales each axis on its own."""
    # x: 640 -> 300, scale 32/15, offset (32/15 - 1) / 2 = 17/30; y: 480 -> 120, factor 4, offset 2.
    intr = codecs.camera_info_intrinsics(camera_info(), 300, 120)
    assert intr.fx == pytest.approx(500.0 * 15 / 32) and intr.fy == pytest.approx(510.0 / 4)
    assert intr.cx == pytest.approx((319.5 - 17 / 30) * 15 / 32)
    assert intr.cy == pytest.approx((239.5 - 2) / 4)


def test_camera_info_zero_intrinsics_rejected():
    with pytest.raises(codecs.IntrinsicsError, match='focal lengths must be positive'):
        codecs.camera_info_intrinsics(camera_info(fx=0.0, fy=0.0), 640, 480)
    with pytest.raises(codecs.IntrinsicsError, match='zero size'):
        codecs.camera_info_intrinsics(camera_info(width=0, height=0), 640, 480)
    with pytest.raises(codecs.IntrinsicsError, match=r'image has zero size \(0x480\); CameraInfo is 640x480'):
        codecs.camera_info_intrinsics(camera_info(), 0, 480)
