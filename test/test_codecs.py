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
    'rgba8': RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8),
    'bgra8': RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8),
    'mono8': RNG.integers(0, 256, (4, 5), dtype=np.uint8),
    '8UC1': RNG.integers(0, 256, (4, 5), dtype=np.uint8),
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


def test_byte_order_flag_of_one_byte_pixels_changes_nothing():
    msg = raw_image(SAMPLES['rgb8'], 'rgb8', big_endian=True)
    view = codecs.image_to_array(msg)
    np.testing.assert_array_equal(view, SAMPLES['rgb8'])
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8)), 'one-byte pixels were copied'


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
    for height, width in ((0, 5), (5, 0)):
        empty = Image(height=height, width=width, encoding='mono8', step=width)
        with pytest.raises(codecs.ImageFormatError, match=rf'zero size \({width}x{height}'):
            codecs.image_to_array(empty)
    small = raw_image(SAMPLES['32FC1'], '32FC1')
    small.step = 8
    expected = r"step 8 is smaller than width \* bytes per pixel = 5 \* 4 = 20 for encoding '32FC1'"
    with pytest.raises(codecs.ImageFormatError, match=expected):
        codecs.image_to_array(small)
    small_rgb = raw_image(SAMPLES['rgb8'], 'rgb8')
    small_rgb.step = 14
    expected = r'step 14 is smaller than width \* bytes per pixel = 5 \* 3 = 15'
    with pytest.raises(codecs.ImageFormatError, match=expected):
        codecs.image_to_array(small_rgb)
    one = raw_image(np.array([[7]], np.uint8), 'mono8')  # the smallest image there is
    np.testing.assert_array_equal(codecs.image_to_array(one), [[7]])


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


def test_camera_info_rectified_reads_p():
    info = camera_info()
    info.p = [400.0, 0.0, 300.0, 0.0, 0.0, 410.0, 200.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    p_intr = Intrinsics(400.0, 410.0, 300.0, 200.0)
    assert codecs.camera_info_intrinsics(info, 640, 480, rectified=True) == p_intr
    assert codecs.camera_info_intrinsics(info, 640, 480) == Intrinsics(500.0, 510.0, 319.5, 239.5)
    assert codecs.camera_info_intrinsics(info, 320, 240, rectified=True) == \
        Intrinsics(200.0, 205.0, (300.0 - 1) / 2, (200.0 - 1) / 2)
    uncalibrated = camera_info()  # P left all zero
    with pytest.raises(codecs.IntrinsicsError, match='focal lengths must be positive'):
        codecs.camera_info_intrinsics(uncalibrated, 640, 480, rectified=True)


def test_camera_info_with_a_region_of_interest_is_refused():
    info = camera_info()
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 10, 20, 320, 240
    with pytest.raises(codecs.IntrinsicsError, match=r'region of interest \(320x240 at 10, 20 of 640x480\)'):
        codecs.camera_info_intrinsics(info, 320, 240)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 0, 0, 640, 480  # the whole image
    assert codecs.camera_info_intrinsics(info, 640, 480) == Intrinsics(500.0, 510.0, 319.5, 239.5)


# ------------------------------------------------------------------------------------------- writers

@pytest.mark.parametrize('encoding, arr', [
    ('32FC1', np.array([[1.5, np.nan, -2.0], [0.0, 3.25, 7.0]], np.float32)),
    ('mono8', np.array([[0, 1, 2], [253, 254, 255]], np.uint8)),
    ('rgb8', np.arange(24, dtype=np.uint8).reshape(2, 4, 3)),
])
def test_image_writer_layout_and_reuse(encoding, arr):
    writer = codecs.ImageWriter(encoding)
    header = Header(frame_id='cam')
    msg = writer.write(arr, header)
    bpp = {'32FC1': 4, 'mono8': 1, 'rgb8': 3}[encoding]
    width = arr.shape[1]
    assert (msg.height, msg.width, msg.step, msg.encoding) == (2, width, width * bpp, encoding)
    assert msg.is_bigendian == (sys.byteorder == 'big') and msg.header.frame_id == 'cam'
    assert bytes(msg.data) == arr.tobytes()  # rows back to back: no padding
    address = msg.data.buffer_info()[0]
    second = arr[::-1].copy()
    assert writer.write(second, Header(frame_id='other')) is msg
    assert msg.data.buffer_info()[0] == address, 'the payload was allocated again for a same-size frame'
    assert bytes(msg.data) == second.tobytes() and msg.header.frame_id == 'other'
    out = writer.array(2, width)
    assert out.flags.writeable and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    bigger = writer.array(4, 5)
    assert (msg.height, msg.width, msg.step, len(msg.data)) == (4, 5, 5 * bpp, 20 * bpp)
    assert bigger.shape[:2] == (4, 5)
    given = array.array('B', bytes(len(msg.data)))
    msg.data = given
    assert msg.data is given, 'the message copied its payload on assignment (check_fields not asked for)'


def test_image_writer_refuses_what_does_not_fit():
    with pytest.raises(codecs.ImageFormatError, match="unsupported encoding 'yuv422'"):
        codecs.ImageWriter('yuv422')
    writer = codecs.ImageWriter('mono8')
    expected = r"'mono8' needs 1-channel uint8 data, got array of shape \(2, 2\) and dtype float32"
    with pytest.raises(codecs.ImageFormatError, match=expected):
        writer.write(np.zeros((2, 2), np.float32))
    with pytest.raises(codecs.ImageFormatError, match='needs 1-channel'):
        writer.write(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(codecs.ImageFormatError, match='needs 1-channel'):
        writer.write(np.zeros(4, np.uint8))


def test_cloud_writer_organized_and_dense_layouts():
    writer = codecs.CloudWriter()
    pts = writer.points((2, 3, 3), Header(frame_id='optical'))
    pts[...] = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    msg = writer.msg
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (2, 3, 12, 36, False)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1), ('z', 8, PointField.FLOAT32, 1)]
    assert msg.is_bigendian == (sys.byteorder == 'big') and msg.header.frame_id == 'optical'
    assert np.array_equal(np.frombuffer(msg.data, np.float32), np.arange(18, dtype=np.float32))
    address = msg.data.buffer_info()[0]
    assert writer.points((2, 3, 3)) is pts and msg.data.buffer_info()[0] == address
    dense = writer.points((4, 3))
    assert (msg.height, msg.width, msg.row_step, msg.is_dense, len(msg.data)) == (1, 4, 48, True, 48)
    assert dense.shape == (4, 3)
    writer.points((0, 3))
    assert (msg.height, msg.width, len(msg.data)) == (1, 0, 0)
    with pytest.raises(codecs.CloudFormatError, match=r'\(H, W, 3\) or \(N, 3\), got shape \(2, 4\)'):
        writer.points((2, 4))


def test_keep_payload_memory_respects_the_environment(monkeypatch):
    monkeypatch.setenv('MALLOC_TRIM_THRESHOLD_', '131072')
    assert codecs.keep_payload_memory() == 'malloc left to the environment (MALLOC_TRIM_THRESHOLD_ set)'
    monkeypatch.delenv('MALLOC_TRIM_THRESHOLD_')
    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    note = codecs.keep_payload_memory()
    import platform
    if platform.libc_ver()[0] == 'glibc':
        assert note == 'malloc keeps per-frame buffers: mmap threshold 32 MiB, trim threshold 64 MiB', note


# -------------------------------------------------------------------------- foreign cloud layouts

def raw_cloud(names_offsets, point_step, values, width, height=1, pad=0, big_endian=False):
    """A PointCloud2 built by hand: float32 fields at the given offsets, ``pad`` garbage bytes per row."""
    order = '>' if big_endian else '<'
    row_step = point_step * width + pad
    buf = np.full(row_step * height, 0xAB, np.uint8)  # garbage everywhere a field does not write
    for name, offset in names_offsets:
        for i in range(height):
            for j in range(width):
                start = i * row_step + j * point_step + offset
                buf[start:start + 4] = np.frombuffer(np.array(values[name][i][j], order + 'f4').tobytes(),
                                                     np.uint8)
    msg = PointCloud2(height=height, width=width, point_step=point_step, row_step=row_step,
                      is_bigendian=big_endian)
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in names_offsets]
    msg.data = array.array('B', buf.tobytes())
    return msg


XYZ = {'x': [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 'y': [[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]],
       'z': [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]], 'intensity': [[9.0] * 3] * 2}
EXPECTED = np.stack([np.array(XYZ[c], np.float32) for c in 'xyz'], axis=-1)


@pytest.mark.parametrize('big_endian', [False, True])
def test_cloud_reader_honours_row_padding_field_order_and_extra_fields(big_endian):
    layout = [('intensity', 0), ('z', 4), ('x', 12), ('y', 20)]  # other order, gaps, an extra field
    msg = raw_cloud(layout, 28, XYZ, width=3, height=2, pad=13, big_endian=big_endian)
    out = codecs.cloud_to_xyz(msg)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, EXPECTED)
    one_row = raw_cloud(layout, 28, {k: v[:1] for k, v in XYZ.items()}, width=3, height=1, pad=5)
    np.testing.assert_array_equal(codecs.cloud_to_xyz(one_row), EXPECTED[0])  # height 1: (N, 3)


def test_cloud_reader_bounds_of_point_step_row_step_and_size():
    layout = [('x', 0), ('y', 4), ('z', 8)]
    exact = raw_cloud(layout, 12, XYZ, width=3, height=2)  # point_step = last offset + 4, no padding
    np.testing.assert_array_equal(codecs.cloud_to_xyz(exact), EXPECTED)
    short_point = raw_cloud(layout, 12, XYZ, width=3, height=2)
    short_point.point_step = 11
    with pytest.raises(codecs.CloudFormatError, match='point_step 11 / row_step 36 too small for 3 points'):
        codecs.cloud_to_xyz(short_point)
    short_row = raw_cloud(layout, 12, XYZ, width=3, height=2)
    short_row.row_step = 35
    with pytest.raises(codecs.CloudFormatError, match='row_step 35 too small'):
        codecs.cloud_to_xyz(short_row)
    truncated = raw_cloud(layout, 12, XYZ, width=3, height=2, pad=4)
    truncated.data = truncated.data[:-1]  # the last row's padding is needed too: row_step * height bytes
    with pytest.raises(codecs.CloudFormatError, match=r'3x2 cloud with row_step 40 needs 80 bytes, got 79'):
        codecs.cloud_to_xyz(truncated)


def test_cloud_reader_refuses_fields_it_cannot_read():
    msg = raw_cloud([('x', 0), ('y', 4), ('z', 8)], 12, XYZ, width=3, height=2)
    msg.fields[1].datatype = PointField.FLOAT64
    with pytest.raises(codecs.CloudFormatError, match=rf"field 'y' must be one FLOAT32 .* got datatype "
                                                      rf'{PointField.FLOAT64} x1'):
        codecs.cloud_to_xyz(msg)
    msg.fields[1].datatype = PointField.FLOAT32
    msg.fields[2].count = 2
    with pytest.raises(codecs.CloudFormatError, match=r"field 'z' .* x2"):
        codecs.cloud_to_xyz(msg)
    msg.fields[2].count = 1
    msg.fields = [msg.fields[0], msg.fields[2]]
    with pytest.raises(codecs.CloudFormatError, match=r'lacks field\(s\) y \(has x, z\)'):
        codecs.cloud_to_xyz(msg)


def test_image_reader_bounds_of_step_and_size():
    arr = SAMPLES['32FC1']  # 4 x 5 float32: 20 bytes per row
    exact = raw_image(arr, '32FC1')
    assert exact.step == 20 and len(exact.data) == 80
    np.testing.assert_array_equal(codecs.image_to_array(exact), arr)
    exact.step = 19
    with pytest.raises(codecs.ImageFormatError, match='step 19 is smaller than width'):
        codecs.image_to_array(exact)
    padded = raw_image(arr, '32FC1', pad=3)
    padded.data = padded.data[:-3]  # without the last row's padding: step * height bytes are required
    with pytest.raises(codecs.ImageFormatError, match='step 23 needs 92 bytes, got 89'):
        codecs.image_to_array(padded)
    longer = raw_image(arr, '32FC1')
    longer.data.extend([0, 0, 0, 0])  # extra bytes after the image are ignored
    np.testing.assert_array_equal(codecs.image_to_array(longer), arr)


@pytest.mark.dds
def test_a_writer_refills_its_message_as_soon_as_publish_returned(ros_graph):
    """rclpy copies the message inside publish(): refilling the payload right after cannot change what was
    sent (240 x 320 frames, so the middleware's large-message path is the one exercised)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    cloud_pub = ros_graph.publisher(PointCloud2, 'writer_test/cloud', reliable)
    image_pub = ros_graph.publisher(Image, 'writer_test/image', reliable)
    clouds = ros_graph.collect(PointCloud2, 'writer_test/cloud', reliable)
    images = ros_graph.collect(Image, 'writer_test/image', reliable)
    ros_graph.wait_for_subscribers(cloud_pub)
    ros_graph.wait_for_subscribers(image_pub)
    cloud_writer, image_writer = codecs.CloudWriter(), codecs.ImageWriter('32FC1')
    for k in range(5):
        cloud_writer.points((240, 320, 3))[...] = k
        cloud_pub.publish(cloud_writer.msg)
        image_writer.array(240, 320)[...] = 10 + k
        image_pub.publish(image_writer.msg)
    got_clouds = [codecs.cloud_to_xyz(m) for m in clouds.wait_for(5)]
    got_images = [codecs.image_to_array(m) for m in images.wait_for(5)]
    for k in range(5):
        assert np.all(got_clouds[k] == k), f'cloud {k}: values {np.unique(got_clouds[k])}, expected {k}'
        assert np.all(got_images[k] == 10 + k), f'image {k}: values {np.unique(got_images[k])}'
