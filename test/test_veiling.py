"""pointcloud_xyz.veiling and backproject's veiling test against hand-computed angles and a closed-form floor
(no ROS). Expected values come from the geometry written out here, never from the module itself."""

import math

import numpy as np
import pytest

from pointcloud_xyz.projection import CameraModel, Rays, backproject
from pointcloud_xyz.veiling import veiling_points
from rc_perception.camera import Intrinsics

NAN = np.nan


def row_rays(width: int, f: float = 200.0, cx: float = 10.0):
    return (np.arange(width, dtype=np.float32)[None, :] - np.float32(cx)) / np.float32(f), np.zeros((1, 1),
                                                                                                 np.float32)


def test_a_flying_pixel_behind_an_edge_and_the_background_beside_it_are_dropped():
    # Columns 0-9: a wall 1 m away; column 10 (on the optical axis): a mixed pixel at 1.6 m; 11-19: 3 m.
    z = np.array([[1.0] * 10 + [1.6] + [3.0] * 9], np.float32)
    rx, ry = row_rays(20)
    got = veiling_points(z, rx, ry, 5.0, 2)
    # Column 10 against column 9: P - Q = (0 - (-1/200) * 1.0, 0, 0.6): atan(0.005 / 0.6) = 0.48 deg < 5.
    # Columns 11, 12 have a nearer reading within two pixels at a similar angle; 13 on have none.
    expected = np.zeros(20, bool)
    expected[10:13] = True
    np.testing.assert_array_equal(got[0], expected, err_msg=f'expected {expected}, got {got[0]}')
    assert not veiling_points(z, rx, ry, 5.0, 1)[0, 12], 'column 12 has no nearer reading one pixel away'


def test_the_nearer_point_of_a_pair_stays_and_no_reading_takes_no_part():
    z = np.array([[1.0, 1.0, NAN, 3.0, 3.0, 3.0]], np.float32)
    rx, ry = row_rays(6, cx=2.0)
    # Column 3 sees column 1 two pixels away: P - Q = (0.005 * 3.0 + 0.005 * 1.0, 0, 2.0): 0.57 deg.
    np.testing.assert_array_equal(veiling_points(z, rx, ry, 5.0, 2)[0], [False, False, False, True, False,
                                                                        False])
    np.testing.assert_array_equal(veiling_points(z, rx, ry, 5.0, 1)[0], [False] * 6)   # NaN in between


@pytest.mark.parametrize('angle, veiling', [(5.0, True), (2.5, False), (0.0, False)])
def test_a_surface_tilted_away_is_veiling_below_its_angle_to_the_ray(angle, veiling):
    # Q = (0, 0, 1.0) and P = (0.012, 0, 1.2) (rays 0 and 0.01): P - Q = (0.012, 0, 0.2) is atan(0.012 / 0.2)
    # = 3.43 deg off the optical axis, and P's ray atan(0.01) = 0.57 deg: 2.86 deg between them.
    z = np.array([[1.0, 1.2]], np.float32)
    rx, ry = np.array([[0.0, 0.01]], np.float32), np.zeros((1, 1), np.float32)
    angle_deg = math.degrees(math.acos((0.012 * 0.012 + 0.2 * 1.2) / (math.hypot(0.012, 0.2) *
                                                                       math.hypot(0.012, 1.2))))
    assert abs(angle_deg - 2.86) < 0.01
    assert veiling_points(z, rx, ry, angle, 1)[0, 1] == veiling


def test_floor_points_stay_within_height_over_tan_angle():
    # A level camera 0.2 m above the floor, f = 300, rows below the principal point: z = 0.2 * 300 / (v - cy).
    # The floor meets the ray of a point at distance z at atan(0.2 / z): under 5 deg beyond 2.286 m.
    h, f, cy = 0.2, 300.0, 0.5
    rows = np.arange(1, 121, dtype=np.float64)
    z = (h * f / (rows - cy)).astype(np.float32)[:, None].repeat(3, axis=1)
    rx = np.array([[-1.0 / f, 0.0, 1.0 / f]], np.float32)
    ry = ((rows - cy) / f).astype(np.float32)[:, None]
    got = veiling_points(z, rx, ry, 5.0, 2)[:, 1]
    near, far = z[:, 1] < 2.2, z[:, 1] > 2.4
    assert near.any() and far.any()
    assert not got[near].any(), f'floor nearer than 2.2 m dropped at {z[near & got, 1]}'
    assert got[far].all(), f'floor beyond 2.4 m kept at {z[far & ~got, 1]}'


def test_backproject_leaves_veiling_points_out_of_both_layouts():
    intr = Intrinsics(200.0, 200.0, 10.0, 0.0)
    rays = Rays(CameraModel(intr), 20, 1)
    depth = np.array([[1.0] * 10 + [1.6] + [3.0] * 9], np.float32)
    organized = backproject(depth, '32FC1', rays, veiling_angle=5.0, veiling_window=2)
    dropped = np.isnan(organized[0, :, 2])
    np.testing.assert_array_equal(np.flatnonzero(dropped), [10, 11, 12])
    dense = backproject(depth, '32FC1', rays, organized=False, veiling_angle=5.0, veiling_window=2)
    np.testing.assert_array_equal(dense, organized[0][~dropped])
    everything = backproject(depth, '32FC1', rays)
    assert np.isfinite(everything).all(), 'veiling_angle 0 (the default) drops nothing'
