"""depth_fusion.ground and the fusion's floor plane against a closed-form floor (no ROS).

The floor seen by a pinhole camera h metres above it, pitched theta nose-down, has optical depth
z(u, v) = h / (cos(theta) * (v - cy) / f + sin(theta)) (floor points satisfy n . P = h with n = (0, cos, sin)
in the optical frame, y down): written out here, never taken from the module under test.
"""

import math

import numpy as np
import pytest

from depth_fusion import kernel
from depth_fusion.fusion import SOURCE_STUDENT, SOURCE_TOF, Fuser, FusionConfig
from depth_fusion.ground import GroundPlane, fit_ground, plane_support, snap_to_ground

H, W, F, CX, CY, CAM_H = 120, 160, 140.0, 79.5, 59.5, 0.2


def floor_depth(pitch_deg: float = 1.0, shape=(H, W)) -> np.ndarray:
    t = math.radians(pitch_deg)
    v = np.arange(shape[0], dtype=np.float64)[:, None].repeat(shape[1], axis=1)
    inv = (math.cos(t) * (v - CY) / F + math.sin(t)) / CAM_H
    with np.errstate(divide='ignore'):
        return np.where(inv > 0, 1.0 / inv, np.nan)


def pixels(mask: np.ndarray, z: np.ndarray):
    v, u = np.nonzero(mask)
    return u.astype(np.float64), v.astype(np.float64), z[v, u]


@pytest.mark.parametrize('pitch', [0.0, 1.0, 5.0])
def test_the_floor_is_recovered_despite_an_obstacle_and_noise(pitch):
    z = floor_depth(pitch)
    seen = np.isfinite(z) & (z < 1.2)                  # the ToF sees the floor to 1.2 m
    z = z * (1.0 + 0.004 * np.random.default_rng(1).standard_normal(z.shape))
    z[95:, 60:100] = 0.3                               # a box face right in front (its foot out of view)
    plane = fit_ground(*pixels(seen, z), (H, W))
    t = math.radians(pitch)
    expected = (0.0, math.cos(t) / (F * CAM_H), (math.sin(t) - math.cos(t) * CY / F) / CAM_H)
    assert plane is not None, 'no plane fitted'
    np.testing.assert_allclose((plane.a, plane.b, plane.c), expected, atol=5e-4,
                               err_msg=f'expected 1/z = {expected}, got {plane}')
    assert plane.inliers <= int(seen.sum()) - 1000     # the box's readings are not inliers


def test_no_plane_from_a_wall_facing_the_camera_or_too_few_readings():
    wall = np.full((H, W), 1.5)
    assert fit_ground(*pixels(np.ones((H, W), bool), wall), (H, W)) is None
    z = floor_depth()
    few = np.zeros((H, W), bool)
    few[-1, :99] = True                                # 99 readings, MIN_INLIERS is 100
    assert fit_ground(*pixels(few, z), (H, W)) is None
    ceiling = floor_depth()[::-1]                      # inverse depth falling downwards: not below us
    assert fit_ground(*pixels(np.isfinite(ceiling), ceiling), (H, W)) is None


def test_snap_truth_table():
    # The plane's depth is 2.0 m at every pixel of the first row (1 / z = 0 * u - 0.6 * v + 0.5); the second
    # row is above the horizon (inverse depth -0.1).
    plane = GroundPlane(0.0, -0.6, 0.5, 0)
    depth = np.array([[1.0, 1.49, 1.5, 1.8, 2.0, 3.0, 1.9], [2.0] * 7], np.float32)
    source = np.full(depth.shape, SOURCE_STUDENT, np.uint8)
    source[0, 6] = SOURCE_TOF
    n = snap_to_ground(depth, source, plane, 0.25)
    # 1.0: an obstacle at half the floor's depth; 1.49 < 0.75 * 2; 1.5 = 0.75 * 2 snaps; beyond the floor
    # snaps; a ToF pixel never; above the horizon nothing.
    np.testing.assert_array_equal(depth, np.array([[1.0, 1.49, 2.0, 2.0, 2.0, 2.0, 1.9], [2.0] * 7],
                                                  np.float32))
    assert n == 4


@pytest.mark.skipif(not kernel.COMPILED, reason=f'the compiled kernel: {kernel.COMPILE_PROBLEM}')
def test_compiled_snap_equals_the_numpy_specification_on_random_inputs():
    rng = np.random.default_rng(3)
    planes = ((48, 64), GroundPlane(1e-4, 0.02, -0.3, 0)), ((31, 17), GroundPlane(-3e-3, 0.1, 0.05, 0))
    for shape, plane in planes:
        depth = rng.uniform(-1.0, 60.0, shape).astype(np.float32)
        specials = rng.choice([np.nan, np.inf, 0.0, -np.inf], depth.size // 8)
        depth.flat[rng.integers(0, depth.size, depth.size // 8)] = specials
        source = rng.integers(0, 3, shape).astype(np.uint8)
        for tolerance in (0.25, 0.0, 0.9):
            got, want = depth.copy(), depth.copy()
            n_got = kernel.snap_compiled(got, source, plane, tolerance)
            n_want = snap_to_ground(want, source, plane, tolerance)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f'{shape} {tolerance}: depths'
            assert n_got == n_want > 0, f'{shape} {tolerance}: {n_got} != {n_want} snapped'


@pytest.mark.skipif(not kernel.COMPILED, reason=f'the compiled kernel: {kernel.COMPILE_PROBLEM}')
def test_compiled_plane_support_equals_the_numpy_specification_on_random_inputs():
    rng = np.random.default_rng(4)
    u, v = rng.integers(0, 640, 3000).astype(np.float64), rng.integers(0, 480, 3000).astype(np.float64)
    inv = 1.0 / rng.uniform(0.3, 4.0, 3000)
    planes = np.stack([rng.normal(0.0, 1e-3, 40), rng.uniform(0.0, 0.02, 40), rng.uniform(-2.0, 1.0, 40)],
                      axis=1)
    planes[0] = (0.0, 0.0, inv[0])  # explains at least the first point, exactly
    got = kernel.plane_support(u, v, inv, 0.03 * inv, planes)
    want = plane_support(u, v, inv, 0.03 * inv, planes)
    np.testing.assert_array_equal(got, want)
    assert want.max() > 0 and want.min() < want.max(), want


def test_plane_inverse_depth_on_a_grid():
    got = GroundPlane(0.01, 0.02, -0.5, 0).inverse_depth((2, 3))
    np.testing.assert_allclose(got, [[-0.5, -0.49, -0.48], [-0.48, -0.47, -0.46]], rtol=1e-6)


def frame(student_scale: float = 1.08):
    """ToF: the floor to 1.2 m (16UC1 mm); student: the floor scaled, and a box at 60 % of the floor's depth
    in rows 40-59 of columns 100-129 (above the horizon of a 1 degree pitch the floor has no depth)."""
    floor = floor_depth(1.0)
    tof = np.where(np.isfinite(floor) & (floor < 1.2), np.round(floor * 1000), 0).astype(np.uint16)
    student = np.where(np.isfinite(floor), floor * student_scale, 4.0).astype(np.float32)
    box = np.zeros((H, W), bool)
    box[70:80, 100:130] = True
    student[box] = (floor[box] * 0.6).astype(np.float32)
    return tof, student, floor, box


def test_fusion_puts_the_students_floor_on_the_tofs_and_keeps_obstacles():
    tof, student, floor, box = frame()
    res = Fuser(FusionConfig(mode='gated', min_student_delta1=0.0)).fuse(student, tof, '16UC1')
    filled = res.source == SOURCE_STUDENT
    on_floor = filled & np.isfinite(floor) & ~box
    assert res.ground is not None and res.ground_pixels == int(on_floor.sum())
    # Fitted to millimetre readings within 1.2 m: within 0.2 % to 4 m, 2 % out to the horizon.
    near = on_floor & (floor < 4.0)
    np.testing.assert_allclose(res.depth[near], floor[near], rtol=2e-3,
                               err_msg="the student's floor was not placed on the ToF's plane")
    np.testing.assert_allclose(res.depth[on_floor], floor[on_floor], rtol=2e-2)
    np.testing.assert_array_equal(res.depth[box], student[box])            # an obstacle keeps its depth
    tof_px = res.source == SOURCE_TOF
    np.testing.assert_array_equal(res.depth[tof_px], tof[tof_px].astype(np.float32) / np.float32(1000))
    sky = filled & ~np.isfinite(floor)
    np.testing.assert_array_equal(res.depth[sky], student[sky])             # above the horizon: as is


def test_ground_tolerance_zero_or_no_tof_leaves_the_student_as_is():
    tof, student, _, _ = frame()
    off = Fuser(FusionConfig(mode='gated', min_student_delta1=0.0, ground_tolerance=0.0)).fuse(student, tof,
                                                                                               '16UC1')
    filled = off.source == SOURCE_STUDENT
    np.testing.assert_array_equal(off.depth[filled], student[filled])
    assert off.ground is None and off.ground_pixels == 0
    alone = Fuser(FusionConfig(mode='gated', min_student_delta1=0.0)).fuse(student)
    np.testing.assert_array_equal(alone.depth, student)
    with pytest.raises(ValueError, match='ground_tolerance'):
        FusionConfig(ground_tolerance=1.0)
