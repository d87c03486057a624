"""pointcloud_xyz.veiling and backproject's veiling test against hand-computed angles and a closed-form floor
(no ROS). Expected values come from the geometry written out here, never from the module itself."""

import math

import numpy as np
import pytest

from pointcloud_xyz import kernel, veiling
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


@pytest.mark.skipif(not kernel.COMPILED, reason=f'the compiled passes: {kernel.COMPILE_PROBLEM}')
@pytest.mark.parametrize('distorted', [False, True], ids=['pinhole', 'per-pixel rays'])
def test_compiled_pass_equals_the_numpy_specification_on_random_inputs(distorted):
    rng = np.random.default_rng(7 + distorted)
    h, w = 37, 53
    # depth steps between planes and ramps, so that every angle occurs; NaN, 0, inf and negatives sprinkled
    z = rng.choice([0.5, 1.0, 1.02, 3.0], (h, w)).astype(np.float32) * rng.uniform(0.98, 1.3, (h, w))
    z = z.astype(np.float32)
    z.flat[rng.integers(0, z.size, z.size // 10)] = rng.choice([np.nan, 0.0, np.inf, -1.0], z.size // 10)
    rx = np.repeat((np.arange(w, dtype=np.float32)[None, :] - 26.0) / 40.0, h, axis=0)
    ry = np.repeat((np.arange(h, dtype=np.float32)[:, None] - 18.0) / 40.0, w, axis=1)
    if distorted:
        rx, ry = (rx * (1 + 0.1 * rx * rx)).astype(np.float32), (ry * (1 + 0.1 * ry * ry)).astype(np.float32)
    for angle, window in ((5.0, 2), (20.0, 1), (12.0, 4)):
        keep = np.isfinite(z) & (z > 0) & (rng.random((h, w)) < 0.9)
        want = keep & ~veiling_points(np.where(keep, z, np.float32(np.nan)), rx, ry, angle, window)
        got = keep.copy()
        veiling.drop_veiling(z, got, rx, ry, angle, window, veiling.scratch((h, w), window))
        assert np.array_equal(got, want), f'{angle} deg, window {window}: {np.argwhere(got != want)[:5]}'
        assert 0 < np.count_nonzero(keep & ~want) < np.count_nonzero(keep), 'drop some, not all'


@pytest.mark.skipif(not kernel.COMPILED, reason=f'the compiled passes: {kernel.COMPILE_PROBLEM}')
@pytest.mark.parametrize('organized', [True, False], ids=['organized', 'dense'])
def test_backproject_gives_the_same_cloud_compiled_and_in_numpy(monkeypatch, organized):
    rng = np.random.default_rng(11)
    depth = rng.choice([0.6, 1.0, 2.5], (30, 40)).astype(np.float32) * rng.uniform(0.97, 1.2, (30, 40))
    depth = depth.astype(np.float32)
    depth.flat[rng.integers(0, depth.size, 120)] = rng.choice([NAN, 0.0, np.inf, -np.inf, 0.01, 50.0], 120)
    rays = Rays(CameraModel(Intrinsics(35.0, 36.0, 19.5, 14.5)), 40, 30)
    clouds = []
    for numba_on in (True, False):
        monkeypatch.setattr(kernel, 'COMPILED', numba_on)
        clouds.append(backproject(depth, '32FC1', rays, range_min=0.05, range_max=10.0, organized=organized,
                                  veiling_angle=5.0, veiling_window=2))
    got, want = clouds
    assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f'{np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))} coordinates differ'
    assert 0 < np.count_nonzero(np.isfinite(want[..., 2])) < depth.size, 'some readings, not all'


@pytest.mark.parametrize('column', [False, True], ids=['one row', 'one column'])
def test_an_image_smaller_than_the_window(column):
    # Three readings along one line of sight's neighbourhood: 1 m, then 1.6 m and 3 m right behind it.
    z = np.array([[1.0, 1.6, 3.0]], np.float32)
    rays = np.array([[0.0, 0.005, 0.01]], np.float32), np.zeros((1, 3), np.float32)
    if column:
        z, rays = z.T.copy(), (rays[1].T.copy(), rays[0].T.copy())
    expected = np.array([False, True, True]).reshape(z.shape)
    np.testing.assert_array_equal(veiling_points(z, *rays, 5.0, 8), expected)
    keep = np.ones(z.shape, bool)
    veiling.drop_veiling(z, keep, *rays, 5.0, 8, veiling.scratch(z.shape, 8))
    np.testing.assert_array_equal(keep, ~expected)
