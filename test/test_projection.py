"""Back-projection math against the closed form (no ROS)."""

import numpy as np
import pytest

from pointcloud_xyz.projection import RayGrid, backproject
from rc_perception.camera import Intrinsics, scale_intrinsics
from rc_perception.depth import to_metres

INTR = Intrinsics(fx=200.0, fy=210.0, cx=31.5, cy=23.5)
H, W = 48, 64


def closed_form(z: np.ndarray, intr: Intrinsics) -> np.ndarray:
    v, u = np.mgrid[0:z.shape[0], 0:z.shape[1]].astype(np.float64)
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=-1)


def test_plane_at_known_distance_matches_closed_form():
    depth = np.full((H, W), 2.5, np.float32)
    pts = backproject(depth, '32FC1', INTR)
    assert pts.shape == (H, W, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, closed_form(depth.astype(np.float64), INTR), rtol=1e-6, atol=1e-6)
    assert np.all(pts[:, :, 2] == 2.5)


def test_principal_point_lies_on_the_optical_axis():
    intr = Intrinsics(fx=100.0, fy=100.0, cx=10.0, cy=7.0)
    depth = np.full((15, 21), 3.0, np.float32)
    pts = backproject(depth, '32FC1', intr)
    np.testing.assert_array_equal(pts[7, 10], [0.0, 0.0, 3.0])
    assert pts[7, 11, 0] > 0 and pts[8, 10, 1] > 0  # x right, y down (optical frame)


def test_16uc1_millimetres_equal_32fc1_metres():
    mm = np.random.default_rng(1).integers(200, 8000, (H, W)).astype(np.uint16)
    pts_mm = backproject(mm, '16UC1', INTR)
    pts_m = backproject(mm.astype(np.float32) / 1000.0, '32FC1', INTR)
    np.testing.assert_allclose(pts_mm, pts_m, rtol=1e-6)


def test_invalid_pixels_become_nan_in_organized_output():
    depth = np.full((4, 4), 1.0, np.float32)
    depth[0, 0] = np.nan
    depth[0, 1] = 0.0
    depth[0, 2] = np.inf
    depth[0, 3] = -1.0
    depth[1, 0] = 0.01   # below range_min
    depth[1, 1] = 20.0   # above range_max
    pts = backproject(depth, '32FC1', Intrinsics(10, 10, 1.5, 1.5), range_min=0.05, range_max=10.0)
    invalid = np.isnan(pts).all(axis=2)
    expected = np.zeros((4, 4), bool)
    expected[0, :] = True
    expected[1, :2] = True
    np.testing.assert_array_equal(invalid, expected)
    assert not np.isnan(pts[~expected]).any()


def test_zero_millimetres_is_invalid():
    mm = np.full((3, 3), 1000, np.uint16)
    mm[1, 1] = 0
    pts = backproject(mm, '16UC1', Intrinsics(10, 10, 1, 1))
    assert np.isnan(pts[1, 1]).all() and np.isfinite(pts[0, 0]).all()


def test_dense_output_keeps_exactly_the_valid_points_in_order():
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 5.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.3] = np.nan
    organized = backproject(depth, '32FC1', INTR)
    dense = backproject(depth, '32FC1', INTR, organized=False)
    valid = ~np.isnan(depth)
    assert dense.shape == (valid.sum(), 3)
    np.testing.assert_array_equal(dense, organized[valid])


def test_skip_decimates_with_correct_geometry():
    depth = np.full((H, W), 2.0, np.float32)
    pts = backproject(depth, '32FC1', INTR, skip=4)
    assert pts.shape == (H // 4, W // 4, 3)
    np.testing.assert_allclose(pts, closed_form(depth.astype(np.float64), INTR)[::4, ::4], rtol=1e-6)
    odd = backproject(np.full((7, 9), 1.0, np.float32), '32FC1', INTR, skip=2)
    assert odd.shape == (4, 5, 3)


def test_ray_grid_is_cached_until_intrinsics_or_size_change():
    grid = RayGrid()
    depth = np.ones((H, W), np.float32)
    for _ in range(3):
        backproject(depth, '32FC1', INTR, grid=grid)
    assert grid.rebuilds == 1
    backproject(depth, '32FC1', Intrinsics(201.0, 210.0, 31.5, 23.5), grid=grid)
    backproject(np.ones((H // 2, W // 2), np.float32), '32FC1', INTR, grid=grid)
    assert grid.rebuilds == 3


def test_decimated_grid_back_projects_to_the_same_points_as_full_resolution():
    """A depth sampled at the shared grid convention (pixel 2j + 1 for a factor 2, 3j + 1 for 3) with K
    scaled by scale_intrinsics gives exactly the full-resolution point of the sampled pixel."""
    full = Intrinsics(fx=400.0, fy=410.0, cx=59.5, cy=47.25)
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 4.0, (96, 120)).astype(np.float32)
    p_full = backproject(depth, '32FC1', full)
    for f in (2, 3, 4):
        small = scale_intrinsics(full, (120, 96), (120 // f, 96 // f))
        o = f // 2
        p_small = backproject(np.ascontiguousarray(depth[o::f, o::f]), '32FC1', small)
        np.testing.assert_allclose(p_small, p_full[o::f, o::f], atol=1e-6, rtol=0,
                                   err_msg=f'factor {f}: decimated points differ from full resolution')


def test_axis_map_conventions():
    from rc_perception.camera import axis_map
    assert (axis_map(640, 320).scale, axis_map(640, 320).offset) == (2.0, 1.0)
    assert (axis_map(480, 160).scale, axis_map(480, 160).offset) == (3.0, 1.0)
    np.testing.assert_array_equal(axis_map(8, 4).nearest(4, 8), [1, 3, 5, 7])
    np.testing.assert_array_equal(axis_map(2, 6).nearest(6, 2), [0, 0, 0, 1, 1, 1])  # upsampling: j // 3
    up = axis_map(320, 640)
    assert (up.scale, up.offset) == (0.5, -0.25)
    odd = axis_map(848, 320)  # not a whole factor: area centres, nearest pixel within half a pixel
    centres = odd.source_coordinate(np.arange(320))
    assert np.all(np.abs(odd.nearest(320, 848) - centres) <= 0.5)
    assert odd.offset == pytest.approx((848 / 320 - 1) / 2)


def test_to_metres_rejects_non_depth_encoding():
    with pytest.raises(ValueError, match="got 'rgb8'"):
        to_metres(np.zeros((2, 2), np.uint8), 'rgb8')
