"""rc_perception.camera: the one grid convention and intrinsics scaling, against hand-worked numbers.

Convention (module docstring): destination pixel j sits at source coordinate ``scale * j + offset``; a
whole-factor decimation f uses offset f // 2 (an existing source pixel), any other ratio the area centre
``(scale - 1) / 2``. The closed forms below are worked by hand from that sentence.
"""

import math

import numpy as np
import pytest

from rc_perception.camera import (
    AxisMap,
    Intrinsics,
    IntrinsicsError,
    axis_map,
    integer_factor,
    scale_intrinsics,
)


@pytest.mark.parametrize('src, dst, expected', [
    (640, 320, 0.5), (640, 640, 1.0), (320, 640, 2.0), (9, 3, 1 / 3), (3, 9, 3.0), (1, 1, 1.0),
    (640, 300, None), (300, 640, None), (848, 320, None), (0, 5, None), (5, 0, None), (-4, 2, None),
    (2, -4, None),
])
def test_integer_factor(src, dst, expected):
    got = integer_factor(src, dst)
    assert got == (pytest.approx(expected) if expected else None), f'{src} -> {dst}: got {got}'
    if expected is not None:
        assert isinstance(got, float)


@pytest.mark.parametrize('src, dst, scale, offset', [
    (640, 640, 1.0, 0.0),          # same size: identity
    (1, 1, 1.0, 0.0),              # a one-pixel axis is an axis
    (3, 1, 3.0, 1.0),              # all of an axis into one pixel: its centre
    (1, 4, 0.25, -0.375),          # one pixel spread over four
    (640, 320, 2.0, 1.0),          # f = 2: source pixel 2j + 1 (the later of the two central ones)
    (9, 3, 3.0, 1.0),              # f = 3: source pixel 3j + 1 (the centre)
    (8, 2, 4.0, 2.0),              # f = 4: source pixel 4j + 2
    (320, 640, 0.5, -0.25),        # upsampling: area centre (0.5 - 1) / 2
    (848, 320, 2.65, 0.825),       # 848 / 320 = 2.65, (2.65 - 1) / 2
    (480, 180, 480 / 180, (480 / 180 - 1) / 2),
])
def test_axis_map_closed_forms(src, dst, scale, offset):
    m = axis_map(src, dst)
    assert isinstance(m, AxisMap)
    assert (m.scale, m.offset) == (pytest.approx(scale), pytest.approx(offset)), f'{src} -> {dst}: {m}'
    assert m.source_coordinate(0) == pytest.approx(offset)
    assert m.source_coordinate(3) == pytest.approx(3 * scale + offset)


def test_area_centre_maps_the_image_centre_to_the_image_centre():
    for src, dst in ((848, 320), (480, 180), (320, 640), (7, 5)):
        m = axis_map(src, dst)
        assert m.source_coordinate((dst - 1) / 2) == pytest.approx((src - 1) / 2), (src, dst)


@pytest.mark.parametrize('src, dst', [(0, 3), (3, 0), (-2, 1), (1, -2)])
def test_axis_map_refuses_non_positive_sizes(src, dst):
    with pytest.raises(IntrinsicsError, match=f'grid sizes must be positive, got {src} and {dst}'):
        axis_map(src, dst)


def test_nearest_decimation_upsampling_ties_and_clipping():
    np.testing.assert_array_equal(axis_map(640, 320).nearest(4, 640), [1, 3, 5, 7])
    np.testing.assert_array_equal(axis_map(9, 3).nearest(3, 9), [1, 4, 7])
    np.testing.assert_array_equal(axis_map(3, 6).nearest(6, 3), [0, 0, 1, 1, 2, 2])  # j // 2
    np.testing.assert_array_equal(AxisMap(1.0, 0.5).nearest(3, 9), [1, 2, 3])  # half rounds up
    np.testing.assert_array_equal(AxisMap(2.0, 1.0).nearest(4, 5), [1, 3, 4, 4])  # clipped to src - 1
    np.testing.assert_array_equal(AxisMap(1.0, -3.0).nearest(4, 10), [0, 0, 0, 0])  # clipped to 0
    np.testing.assert_array_equal(AxisMap(1.0, -0.4).nearest(2, 10), [0, 1])  # -0.4 -> 0, 0.6 -> 1
    idx = axis_map(848, 320).nearest(320, 848)
    assert idx.dtype == np.int64 and idx.shape == (320,)
    assert (idx[0], idx[-1]) == (1, 846), f'848 -> 320: first {idx[0]} (0.825), last {idx[-1]} (846.175)'


K640 = Intrinsics(fx=500.0, fy=520.0, cx=319.5, cy=239.5)


def test_same_size_returns_the_intrinsics_unchanged():
    assert scale_intrinsics(K640, (640, 480), (640, 480)) is K640


def test_decimation_by_two_keeps_existing_pixels_on_the_same_rays():
    got = scale_intrinsics(K640, (640, 480), (320, 240))
    # fx' = fx / 2, cx' = (cx - 1) / 2 (pixel j sits at source pixel 2j + 1)
    assert got == Intrinsics(fx=250.0, fy=260.0, cx=159.25, cy=119.25), got
    for j in (0, 100, 319):  # the ray of decimated pixel j is the ray of full-resolution pixel 2j + 1
        assert (j - got.cx) / got.fx == pytest.approx((2 * j + 1 - K640.cx) / K640.fx)


def test_one_pixel_high_images_scale_too():
    line = Intrinsics(fx=500.0, fy=500.0, cx=3.5, cy=0.0)
    got = scale_intrinsics(line, (8, 1), (4, 1))  # x decimated by 2, y unchanged
    assert got == Intrinsics(fx=250.0, fy=500.0, cx=1.25, cy=0.0), got
    assert scale_intrinsics(line, (1, 1), (2, 2)).fx == pytest.approx(1000.0)
    point = scale_intrinsics(Intrinsics(500.0, 500.0, 1.5, 0.0), (4, 1), (1, 1))  # a whole row into 1 px
    assert point == Intrinsics(fx=125.0, fy=500.0, cx=-0.125, cy=0.0), point  # pixel 0 sits at source 2


def test_upsampling_and_aspect_change_keep_the_centre():
    up = scale_intrinsics(Intrinsics(250.0, 260.0, 159.5, 119.5), (320, 240), (640, 480))
    assert up == Intrinsics(fx=500.0, fy=520.0, cx=pytest.approx(319.5), cy=pytest.approx(239.5)), up
    wide = scale_intrinsics(K640, (640, 480), (320, 180))  # 4:3 -> 16:9, y by 480/180 (not whole)
    s = 480 / 180
    assert wide.fx == 250.0 and wide.cx == 159.25
    assert wide.fy == pytest.approx(520.0 / s) and wide.cy == pytest.approx(89.5)  # (cy + 0.5) / s - 0.5


@pytest.mark.parametrize('from_size, to_size, message', [
    ((0, 480), (320, 240), r'CameraInfo has zero size \(0x480\); cannot relate it to a 320x240 image'),
    ((640, 0), (320, 240), r'CameraInfo has zero size \(640x0\)'),
    ((640, 480), (0, 240), r'image has zero size \(0x240\); CameraInfo is 640x480'),
    ((640, 480), (320, 0), r'image has zero size \(320x0\)'),
])
def test_zero_sizes_are_named(from_size, to_size, message):
    with pytest.raises(IntrinsicsError, match=message):
        scale_intrinsics(K640, from_size, to_size)


@pytest.mark.parametrize('intr, message', [
    (Intrinsics(0.0, 0.0, 0.0, 0.0), 'focal lengths must be positive, got fx=0, fy=0 .*uncalibrated'),
    (Intrinsics(500.0, -1.0, 320.0, 240.0), 'focal lengths must be positive, got fx=500, fy=-1'),
    (Intrinsics(-500.0, 500.0, 320.0, 240.0), 'focal lengths must be positive'),
    (Intrinsics(0.0, 500.0, 320.0, 240.0), 'focal lengths must be positive, got fx=0, fy=500'),
    (Intrinsics(500.0, 0.0, 320.0, 240.0), 'focal lengths must be positive, got fx=500, fy=0'),
    (Intrinsics(math.nan, 500.0, 320.0, 240.0), 'intrinsics must be finite'),
    (Intrinsics(500.0, 500.0, math.inf, 240.0), 'intrinsics must be finite'),
    (Intrinsics(500.0, 500.0, 320.0, -math.inf), 'intrinsics must be finite'),
    (Intrinsics(500.0, math.inf, 320.0, 240.0), 'intrinsics must be finite'),
])
def test_invalid_intrinsics_are_refused_even_for_the_same_size(intr, message):
    with pytest.raises(IntrinsicsError, match=message):
        intr.validate()
    with pytest.raises(IntrinsicsError, match=message):
        scale_intrinsics(intr, (640, 480), (640, 480))


def test_valid_intrinsics_validate_to_themselves():
    assert K640.validate() is K640
    tiny = Intrinsics(1e-9, 1e-9, -5.0, -5.0)  # positive focal lengths, any principal point
    assert tiny.validate() is tiny
    assert issubclass(IntrinsicsError, ValueError)
