"""Back-projection and clearing points against closed forms and hand-written arrays (no ROS).

Expected values are computed here from the pinhole formula (u - cx) / fx * z, hand-written tables, or the
distortion models written out again below; never with pointcloud_xyz itself.
"""

import math

import numpy as np
import pytest

from pointcloud_xyz.distortion import Distortion, DistortionError
from pointcloud_xyz.projection import CameraModel, RayGrid, Rays, backproject, clearing_points
from rc_perception.camera import Intrinsics, scale_intrinsics

INTR = Intrinsics(fx=200.0, fy=210.0, cx=31.5, cy=23.5)
H, W = 48, 64
NAN = np.nan


def rays(intr=INTR, width=W, height=H, skip=1, distortion=None) -> Rays:
    return Rays(CameraModel(intr, distortion), width, height, skip)


def closed_form(z: np.ndarray, intr: Intrinsics, rows=None, cols=None) -> np.ndarray:
    """Pinhole points of image pixels (rows[i], cols[j]) with depth z[i, j] (float64)."""
    rows = np.arange(z.shape[0]) if rows is None else np.asarray(rows)
    cols = np.arange(z.shape[1]) if cols is None else np.asarray(cols)
    v, u = np.meshgrid(rows.astype(np.float64), cols.astype(np.float64), indexing='ij')
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=-1)


# ------------------------------------------------------------------------------------------ readings

def test_plane_at_known_distance_matches_closed_form():
    depth = np.full((H, W), 2.5, np.float32)
    pts = backproject(depth, '32FC1', rays())
    assert pts.shape == (H, W, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, closed_form(np.full((H, W), 2.5), INTR), rtol=1e-6, atol=1e-6)
    # Two corners by hand: (0 - 31.5) / 200 * 2.5 = -0.39375; (47 - 23.5) / 210 * 2.5 = 0.279762
    np.testing.assert_allclose(pts[0, 0], [-0.39375, -23.5 / 210 * 2.5, 2.5], rtol=1e-6)
    np.testing.assert_allclose(pts[47, 63], [31.5 / 200 * 2.5, 23.5 / 210 * 2.5, 2.5], rtol=1e-6)


def test_principal_point_lies_on_the_optical_axis_x_right_y_down():
    pts = backproject(np.full((15, 21), 3.0, np.float32), '32FC1', rays(Intrinsics(100.0, 100.0, 10.0, 7.0),
                                                                       21, 15))
    np.testing.assert_array_equal(pts[7, 10], [0.0, 0.0, 3.0])
    np.testing.assert_allclose(pts[7, 11], [0.03, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(pts[8, 10], [0.0, 0.03, 3.0], rtol=1e-6)
    np.testing.assert_allclose(pts[6, 9], [-0.03, -0.03, 3.0], rtol=1e-6)


def test_16uc1_millimetres_are_metres_times_0_001():
    mm = np.array([[1500, 250], [4000, 1]], np.uint16)
    intr = Intrinsics(10.0, 10.0, 0.5, 0.5)
    pts = backproject(mm, '16UC1', rays(intr, 2, 2), range_min=0.0, range_max=10.0)
    np.testing.assert_allclose(pts[:, :, 2], [[1.5, 0.25], [4.0, 0.001]], rtol=1e-6)
    np.testing.assert_allclose(pts[1, 0], [-0.05 * 4.0, 0.05 * 4.0, 4.0], rtol=1e-6)
    mono16 = backproject(mm, 'mono16', rays(intr, 2, 2), range_min=0.0, range_max=10.0)
    np.testing.assert_array_equal(mono16, pts)


def test_no_reading_becomes_nan_in_organized_output():
    depth = np.array([[NAN, 0.0, np.inf, -np.inf],
                      [-1.0, 0.01, 20.0, 1.0]], np.float32)
    grid = rays(Intrinsics(10, 10, 1.5, 0.5), 4, 2)
    pts = backproject(depth, '32FC1', grid, range_min=0.05, range_max=10.0)
    expected_nan = np.array([[True, True, True, True], [True, True, True, False]])
    np.testing.assert_array_equal(np.isnan(pts).all(axis=2), expected_nan)
    assert not np.isnan(pts[1, 3]).any()
    np.testing.assert_allclose(pts[1, 3], [0.15, 0.05, 1.0], rtol=1e-6)


# Every bound at, just inside and just outside, on every path (organized, dense, skip, 16UC1, 32FC1).
LO, HI = 0.5, 2.0
F32 = np.float32
BOUND_CASES_M = [  # (depth in metres, kept?)
    (F32(LO), True), (F32(HI), True),
    (np.nextafter(F32(LO), F32(1)), True), (np.nextafter(F32(HI), F32(0)), True),
    (np.nextafter(F32(LO), F32(0)), False), (np.nextafter(F32(HI), F32(3)), False),
]
BOUND_CASES_MM = [(500, True), (2000, True), (501, True), (1999, True), (499, False), (2001, False)]


@pytest.mark.parametrize('encoding, cases', [('32FC1', BOUND_CASES_M), ('16UC1', BOUND_CASES_MM)])
@pytest.mark.parametrize('organized', [True, False])
@pytest.mark.parametrize('skip', [1, 2])
def test_range_bounds_are_inclusive_on_every_path(encoding, cases, organized, skip):
    dtype = np.float32 if encoding == '32FC1' else np.uint16
    values = np.array([c[0] for c in cases], dtype)
    kept = np.array([c[1] for c in cases])
    # One case per kept pixel: with skip 2 the kept pixels are (1, 1 + 2k); others hold a reading (1.0 m)
    # that must not matter.
    depth = np.full((2 * skip, skip * len(cases)), 1.0 if dtype == np.float32 else 1000, dtype)
    depth[skip // 2, skip // 2::skip] = values
    grid = rays(Intrinsics(10.0, 10.0, 0.0, 0.0), depth.shape[1], depth.shape[0], skip)
    pts = backproject(depth, encoding, grid, range_min=LO, range_max=HI, organized=organized)
    metres = values.astype(np.float32) / (F32(1000) if dtype == np.uint16 else F32(1))
    if organized:
        row = pts[0, :, 2]
        assert np.array_equal(~np.isnan(row), kept), f'kept {~np.isnan(row)}, expected {kept} for {values}'
        np.testing.assert_array_equal(row[kept], metres[kept])
    else:  # row-major: the kept cases first, then the second kept row's 1.0 m readings
        assert pts.shape[0] == kept.sum() + len(cases), f'{pts.shape[0]} points, expected {kept.sum()} + 6'
        np.testing.assert_array_equal(pts[:kept.sum(), 2], metres[kept])


def test_dense_output_is_the_readings_in_row_major_order():
    depth = np.array([[1.0, NAN, 2.0],
                      [0.0, 4.0, np.inf]], np.float32)
    intr = Intrinsics(2.0, 4.0, 1.0, 0.0)
    pts = backproject(depth, '32FC1', rays(intr, 3, 2), organized=False)
    expected = np.array([[(0 - 1) / 2 * 1.0, 0.0, 1.0],
                         [(2 - 1) / 2 * 2.0, 0.0, 2.0],
                         [0.0, 1 / 4 * 4.0, 4.0]], np.float32)
    np.testing.assert_array_equal(pts, expected)
    empty = backproject(np.full((2, 3), NAN, np.float32), '32FC1', rays(intr, 3, 2), organized=False)
    assert empty.shape == (0, 3)


def test_skip_keeps_pixels_skip_j_plus_half_skip():
    intr = Intrinsics(50.0, 50.0, 4.0, 3.0)
    depth = np.arange(1, 64, dtype=np.float32).reshape(7, 9)  # depth = 9 * v + u + 1
    pts = backproject(depth, '32FC1', rays(intr, 9, 7, skip=2), range_max=100.0)
    assert pts.shape == (3, 4, 3)  # rows 1, 3, 5; columns 1, 3, 5, 7
    rows, cols = [1, 3, 5], [1, 3, 5, 7]
    z = np.array([[9 * v + u + 1 for u in cols] for v in rows], np.float64)
    np.testing.assert_allclose(pts, closed_form(z, intr, rows, cols), rtol=1e-6)
    three = backproject(np.ones((7, 9), np.float32), '32FC1', rays(intr, 9, 7, skip=3))
    assert three.shape == (2, 3, 3)  # rows 1, 4; columns 1, 4, 7
    np.testing.assert_allclose(three[1, 2, :2], [(7 - 4) / 50, (4 - 3) / 50], rtol=1e-6)


def test_decimated_grid_back_projects_to_the_same_points_as_full_resolution():
    """A depth sampled at the shared grid convention (pixel f j + f // 2) with K scaled by
    scale_intrinsics gives exactly the full-resolution point of the sampled pixel."""
    full = Intrinsics(fx=400.0, fy=410.0, cx=59.5, cy=47.25)
    depth = np.random.default_rng(3).uniform(0.5, 4.0, (96, 120)).astype(np.float32)
    p_full = backproject(depth, '32FC1', rays(full, 120, 96))
    for f in (2, 3, 4):
        small = scale_intrinsics(full, (120, 96), (120 // f, 96 // f))
        o = f // 2
        sampled = np.ascontiguousarray(depth[o::f, o::f])
        p_small = backproject(sampled, '32FC1', rays(small, 120 // f, 96 // f))
        np.testing.assert_allclose(p_small, p_full[o::f, o::f], atol=1e-6, rtol=0,
                                   err_msg=f'factor {f}: decimated points differ from full resolution')
        p_skip = backproject(depth, '32FC1', rays(full, 120, 96, skip=f))
        np.testing.assert_allclose(p_skip, p_full[o::f, o::f], atol=1e-6, rtol=0)


def test_strided_input_and_caller_buffer():
    padded = np.full((4, 6), 9.0, np.float32)
    padded[:, :4] = 2.0
    view = padded[:, :4]  # as image_to_array returns an image with row padding
    buffers = []

    def out(shape):
        buffers.append(np.zeros(shape, np.float32))
        return buffers[-1]

    pts = backproject(view, '32FC1', rays(Intrinsics(1.0, 1.0, 0.0, 0.0), 4, 4), out=out)
    assert pts is buffers[0] and pts.shape == (4, 4, 3)
    np.testing.assert_array_equal(pts[:, :, 2], 2.0)
    np.testing.assert_array_equal(pts[3, 2], [4.0, 6.0, 2.0])


def test_wrong_encoding_and_size_are_refused():
    with pytest.raises(ValueError, match="got 'rgb8'"):
        backproject(np.zeros((2, 2), np.uint8), 'rgb8', rays(width=2, height=2))
    with pytest.raises(ValueError, match=r'\(2, 3\) kept pixels does not fit a grid of \(2, 2\)'):
        backproject(np.zeros((2, 3), np.float32), '32FC1', rays(width=2, height=2))
    with pytest.raises(ValueError, match='skip must be >= 1'):
        rays(skip=0)


def test_ray_grid_is_kept_until_model_size_or_skip_changes():
    grid = RayGrid(capacity=2)
    model = CameraModel(INTR)
    first = grid.rays(model, W, H)
    assert first.shape == (H, W) and first.skip == 1
    assert grid.rays(CameraModel(Intrinsics(200.0, 210.0, 31.5, 23.5)), W, H, 1) is first
    assert grid.rebuilds == 1
    grid.rays(model, W, H, skip=4)
    assert grid.rays(model, W, H) is first and grid.rebuilds == 2  # two grids kept side by side
    grid.rays(CameraModel(Intrinsics(201.0, 210.0, 31.5, 23.5)), W, H)  # a third: the oldest goes
    assert grid.rebuilds == 3
    assert grid.rays(model, W, H) is not first and grid.rebuilds == 4


def test_ray_grid_keeps_four_grids_by_default():
    grid = RayGrid()
    models = [CameraModel(Intrinsics(200.0 + i, 210.0, 31.5, 23.5)) for i in range(5)]
    kept = [grid.rays(m, W, H) for m in models[:4]]
    assert all(grid.rays(m, W, H) is r for m, r in zip(models[:4], kept, strict=True)) and grid.rebuilds == 4
    grid.rays(models[4], W, H)
    assert grid.rays(models[0], W, H) is not kept[0] and grid.rebuilds == 6
    assert Rays(CameraModel(INTR), W, H).shape == (H, W)  # skip defaults to 1


def test_clearing_depths_follow_a_new_distance():
    grid = rays(Intrinsics(1.0, 1.0, 0.0, 0.0), 2, 1)
    none = np.full((1, 2), NAN, np.float32)
    for distance in (1.0, 2.0, 1.0):
        pts = clearing_points(none, '32FC1', grid, range_min=0.1, range_max=5.0, distance=distance)
        np.testing.assert_allclose(np.linalg.norm(pts, axis=1), [distance, distance], rtol=1e-6)


# ---------------------------------------------------------------------------------------- distortion
# The forward models written out again (OpenCV's documented formulas), independent of pointcloud_xyz.

def brown(x, y, k1=0.0, k2=0.0, p1=0.0, p2=0.0, k3=0.0, k4=0.0, k5=0.0, k6=0.0):
    r2 = x ** 2 + y ** 2
    radial = (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3) / (1 + k4 * r2 + k5 * r2 ** 2 + k6 * r2 ** 3)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x ** 2),
            y * radial + p1 * (r2 + 2 * y ** 2) + 2 * p2 * x * y)


def fisheye(x, y, k1, k2, k3, k4):
    r = math.hypot(x, y)
    theta = math.atan(r)
    theta_d = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4 + k3 * theta ** 6 + k4 * theta ** 8)
    return (x * theta_d / r, y * theta_d / r) if r else (x, y)


LENSES = {
    'plumb_bob': ([-0.28, 0.07, 1e-3, -2e-3, 0.01], lambda x, y, d: brown(x, y, *d)),
    'rational_polynomial': ([2.5, 1.1, 1e-3, -2e-3, 0.05, 2.8, 1.6, 0.2], lambda x, y, d: brown(x, y, *d)),
    'equidistant': ([-0.01, 0.05, -0.06, 0.02], lambda x, y, d: fisheye(x, y, *d)),
}
KNOWN_POINTS = [(0.0, 0.0, 1.0), (0.9, -0.6, 1.5), (-1.4, 1.0, 2.2), (2.0, 1.5, 3.0), (-0.05, 0.4, 0.7)]


@pytest.mark.parametrize('model', LENSES)
def test_distorted_image_recovers_known_3d_points(model):
    """Project a known point through the lens (forward model above), put its depth at the pixel it lands
    on, and read the point back from the cloud."""
    d, forward = LENSES[model]
    fx, fy = 300.0, 310.0
    for point in KNOWN_POINTS:
        x, y, z = point
        xd, yd = forward(x / z, y / z, d)
        u0, v0 = 7, 5  # choose the principal point so the point lands exactly on pixel (7, 5)
        intr = Intrinsics(fx, fy, u0 - fx * xd, v0 - fy * yd)
        depth = np.full((9, 12), NAN, np.float32)
        depth[v0, u0] = z
        lens = Distortion.from_camera_info(model, d)
        pts = backproject(depth, '32FC1', rays(intr, 12, 9, distortion=lens), range_max=100.0)
        np.testing.assert_allclose(pts[v0, u0], point, atol=1e-6, rtol=0,
                                   err_msg=f'{model}: point {point} not recovered')
        assert np.isnan(pts[0, 0]).all()


@pytest.mark.parametrize('model', LENSES)
def test_every_ray_of_a_distorted_grid_reprojects_onto_its_pixel(model):
    d, forward = LENSES[model]
    intr = Intrinsics(250.0, 250.0, 159.5, 119.5)
    grid = rays(intr, 320, 240, skip=8, distortion=Distortion.from_camera_info(model, d))
    pts = backproject(np.full((240, 320), 2.0, np.float32), '32FC1', grid)
    assert not np.isnan(pts).any()
    for i, j in [(0, 0), (0, 39), (29, 0), (29, 39), (15, 20), (3, 31)]:
        x, y, z = (float(c) for c in pts[i, j])
        xd, yd = forward(x / z, y / z, d)
        u, v = 8 * j + 4, 8 * i + 4
        assert abs(intr.fx * xd + intr.cx - u) < 1e-4 and abs(intr.fy * yd + intr.cy - v) < 1e-4, \
            f'{model}: pixel ({u}, {v}) reprojects to ({intr.fx * xd + intr.cx}, {intr.fy * yd + intr.cy})'
        assert z == 2.0


def test_a_lens_that_folds_over_leaves_the_rim_without_rays():
    """k1 = -0.5: r (1 - 0.5 r^2) peaks at r = 0.816 (rd = 0.544); pixels beyond have no ray."""
    lens = Distortion.from_camera_info('plumb_bob', [-0.5, 0.0, 0.0, 0.0, 0.0])
    intr = Intrinsics(100.0, 100.0, 0.0, 0.0)
    grid = rays(intr, 80, 1, distortion=lens)  # rd = u / 100 for u = 0 .. 79
    assert grid.valid is not None
    np.testing.assert_array_equal(grid.valid[0], np.arange(80) <= 54)
    depth = np.ones((1, 80), np.float32)
    organized = backproject(depth, '32FC1', grid)
    assert np.isnan(organized[0, 55:]).all() and not np.isnan(organized[0, :55]).any()
    assert backproject(depth, '32FC1', grid, organized=False).shape == (55, 3)
    none = np.full((1, 80), NAN, np.float32)
    assert clearing_points(none, '32FC1', grid, range_min=0.1, range_max=5.0, distance=1.0).shape == (55, 3)


def test_fold_radius_of_each_model():
    """Where the radial part stops growing: d/dr r (1 + k1 r^2) = 0 at r^2 = -1 / (3 k1); for the fisheye
    theta (1 + k3 theta^6) peaks at theta^6 = -1 / (7 k3), so r = tan(theta)."""
    assert Distortion('plumb_bob', (-0.5, 0.0, 0.0, 0.0, 0.0)).fold_radius() == \
        pytest.approx(math.sqrt(2 / 3), rel=1e-3)
    tangential = Distortion('plumb_bob', (-0.5, 0.0, 0.2, 0.2, 0.0))  # p1, p2 do not move the fold
    assert tangential.fold_radius() == pytest.approx(math.sqrt(2 / 3), rel=1e-3)
    rational = Distortion('rational_polynomial', (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5))
    # r / (1 + 0.5 r^6) peaks at 1 + 0.5 r^6 = 3 r^6, r^6 = 0.4
    assert rational.fold_radius() == pytest.approx(0.4 ** (1 / 6), rel=1e-3)
    fisheye = Distortion('equidistant', (0.0, 0.0, -0.5, 0.0))
    assert fisheye.fold_radius() == pytest.approx(math.tan((1 / 3.5) ** (1 / 6)), rel=1e-3)
    assert Distortion('plumb_bob', (-0.28, 0.07, 0.0, 0.0, 0.0)).fold_radius() == math.inf
    assert Distortion('equidistant', (-0.01, 0.05, -0.06, 0.02)).fold_radius() == math.inf


def test_a_folding_lens_has_no_rays_past_the_fold_in_any_direction():
    """k1 = -0.5 on the diagonal: distorted radii up to 0.544 have a ray, larger ones none."""
    lens = Distortion('plumb_bob', (-0.5, 0.0, 0.0, 0.0, 0.0))
    radius = np.arange(80) / 100
    for angle in (0.25 * math.pi, 0.8 * math.pi, -0.6 * math.pi):
        x, y = lens.undistort(radius * math.cos(angle), radius * math.sin(angle))
        np.testing.assert_array_equal(np.isfinite(x), radius <= 0.544, err_msg=f'angle {angle:.2f}')
        r = np.hypot(x[:55], y[:55])
        np.testing.assert_allclose(r - 0.5 * r ** 3, radius[:55], atol=1e-9)


def test_ray_grid_keys_on_the_lens():
    grid = RayGrid()
    lens = CameraModel(INTR, Distortion('plumb_bob', (0.1, 0.0, 0.0, 0.0, 0.0)))
    first = grid.rays(lens, W, H)
    same = CameraModel(INTR, Distortion.from_camera_info('plumb_bob', [0.1, 0.0, 0.0, 0.0]))
    assert grid.rays(same, W, H) is first
    assert grid.rays(CameraModel(INTR, Distortion('plumb_bob', (0.2, 0.0, 0.0, 0.0, 0.0))), W, H) is not first
    assert grid.rays(CameraModel(INTR), W, H).x.shape == (1, W)  # pinhole: broadcast rays
    assert first.x.shape == (H, W) and grid.rebuilds == 3


def test_distortion_from_camera_info():
    assert Distortion.from_camera_info('plumb_bob', [0.0] * 5) is None
    assert Distortion.from_camera_info('', []) is None
    assert Distortion.from_camera_info('some_vendor_model', [0.0, 0.0]) is None  # nothing to undo
    short = Distortion.from_camera_info('plumb_bob', [0.1, 0.2, 0.0, 0.0])
    assert short == Distortion('plumb_bob', (0.1, 0.2, 0.0, 0.0, 0.0))
    padded = Distortion.from_camera_info('plumb_bob', [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert padded.coeffs == (0.1, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(DistortionError, match=r"'plumb_bob' takes 5 coefficients .* got 8 .*rectified:=true"):
        Distortion.from_camera_info('plumb_bob', [0.1, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0])
    with pytest.raises(DistortionError, match=r"model 'kannala_brandt' .* not supported.*rectified:=true"):
        Distortion.from_camera_info('kannala_brandt', [0.1, 0.0, 0.0, 0.0])
    with pytest.raises(DistortionError, match='must be finite'):
        Distortion.from_camera_info('plumb_bob', [float('nan'), 0.0, 0.0, 0.0, 0.0])


def test_distort_matches_the_written_out_models_and_undistort_inverts_it():
    xs = np.array([0.0, 0.3, -0.7, 1.1])
    ys = np.array([0.0, -0.2, 0.5, 0.9])
    for model, (d, forward) in LENSES.items():
        lens = Distortion.from_camera_info(model, d)
        xd, yd = lens.distort(xs, ys)
        expected = np.array([forward(float(x), float(y), d) for x, y in zip(xs, ys, strict=True)])
        np.testing.assert_allclose(np.stack([xd, yd], axis=1), expected, rtol=1e-12, atol=1e-15)
        xu, yu = lens.undistort(expected[:, 0], expected[:, 1])
        np.testing.assert_allclose(np.stack([xu, yu], axis=1), np.stack([xs, ys], axis=1), atol=1e-9)


# ------------------------------------------------------------------------------------------ clearing

def unit(x, y):
    n = math.sqrt(x * x + y * y + 1.0)
    return np.array([x / n, y / n, 1.0 / n])


def test_clearing_truth_table():
    """Which pixels cast a clearing ray, and where its point lies (range 0.5 .. 2.0 m, distance 3 m): at the
    distance along the ray, or at the reading when a beyond-range reading is nearer than that."""
    cases = [  # (depth, class)
        (NAN, 'none'), (0.0, 'none'), (-1.0, 'none'), (np.inf, 'beyond'),
        (-np.inf, None), (0.2, None), (np.nextafter(F32(LO), F32(0)), None),   # too near: nothing
        (LO, None), (1.0, None), (HI, None),                                   # readings: the cloud's
        (np.nextafter(F32(HI), F32(3)), 'beyond'), (2.5, 'beyond'), (8.0, 'beyond'),
    ]
    depth = np.array([[c[0] for c in cases]], np.float32)
    intr = Intrinsics(8.0, 8.0, 6.0, 0.0)  # ray of column u: ((u - 6) / 8, 0, 1)
    pts = clearing_points(depth, '32FC1', rays(intr, len(cases), 1), range_min=LO, range_max=HI, distance=3.0)
    expected = []
    for u, (d, kind) in enumerate(cases):
        x = (u - 6) / 8.0
        norm = math.sqrt(x * x + 1.0)
        if kind == 'none':
            expected.append(unit(x, 0.0) * 3.0)
        elif kind == 'beyond':
            expected.append(unit(x, 0.0) * min(3.0, float(np.float32(d)) * norm))
    assert pts.shape == (len(expected), 3), f'expected {len(expected)} clearing points, got {pts.shape[0]}'
    np.testing.assert_allclose(pts, np.array(expected), rtol=1e-6, atol=1e-7)
    # The two beyond-range readings nearer than 3 m are at the reading, the others at 3 m.
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1),
                               [3.0, 3.0, 3.0, 3.0, 2.0 * math.sqrt(1 + 0.5 ** 2),
                                2.5 * math.sqrt(1 + (5 / 8) ** 2), 3.0], rtol=1e-6)


def test_clearing_points_of_millimetres_and_their_distance():
    mm = np.array([[0, 1000, 2001, 9000, 1]], np.uint16)  # none, reading, beyond (2.001 m), beyond, near
    intr = Intrinsics(2.0, 2.0, 2.0, 0.0)
    pts = clearing_points(mm, '16UC1', rays(intr, 5, 1), range_min=LO, range_max=HI, distance=2.5)
    expected = [unit(-1.0, 0.0) * 2.5, unit(0.0, 0.0) * 2.001, unit(0.5, 0.0) * 2.5]
    np.testing.assert_allclose(pts, np.array(expected), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), [2.5, 2.001, 2.5], rtol=1e-6)


def test_clearing_rays_follow_their_own_skip():
    depth = np.full((8, 8), NAN, np.float32)
    depth[1, 1] = 1.0  # a reading on a kept pixel of skip 2: no clearing ray there
    intr = Intrinsics(1.0, 1.0, 3.0, 3.0)
    grid = rays(intr, 8, 8, skip=2)
    pts = clearing_points(depth, '32FC1', grid, range_min=0.1, range_max=5.0, distance=1.0)
    assert pts.shape == (15, 3)  # 4 x 4 kept pixels, one of them a reading
    np.testing.assert_allclose(pts[0], unit(0.0, -2.0), rtol=1e-6)   # pixel (1, 3): x = 0, y = -2
    np.testing.assert_allclose(pts[-1], unit(4.0, 4.0), rtol=1e-6)   # pixel (7, 7)
