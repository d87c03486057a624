"""depth_fusion.fusion: per-pixel truth tables for every rule, corrections, resampling, invariants."""

import numpy as np
import pytest

from depth_fusion.fusion import (
    SOURCE_NONE,
    SOURCE_STUDENT,
    SOURCE_TOF,
    Fuser,
    FusionConfig,
    GridError,
    fuse,
    grid_scale,
    resample_nearest,
    tof_valid,
)
from rc_perception.depth import to_metres

NAN, INF = np.nan, np.inf


def f32(values) -> np.ndarray:
    return np.array(values, np.float32).reshape(1, -1)


def check_table(got, expected, labels, what):
    got, expected = np.asarray(got).ravel(), np.asarray(expected).ravel()
    wrong = [f'{label}: expected {e}, got {g}' for label, g, e in zip(labels, got, expected, strict=True)
             if not (g == e or (np.issubdtype(type(e), np.floating) and np.isnan(e) and np.isnan(g)))]
    assert not wrong, f'{what}:\n' + '\n'.join(wrong)


# ------------------------------------------------------------------------------------- ToF validity

def test_float_tof_validity_truth_table():
    lo, hi = 0.5, 4.0
    cases = {
        'NaN': (NAN, False), '+inf': (INF, False), '-inf': (-INF, False), '0.0': (0.0, False),
        '-0.0': (-0.0, False), 'negative': (-1.0, False),
        'below range_min': (np.nextafter(np.float32(0.5), np.float32(0)), False),
        'range_min exactly': (0.5, True), 'inside': (2.0, True), 'range_max exactly': (4.0, True),
        'above range_max': (np.nextafter(np.float32(4.0), np.float32(5)), False),
        'denormal': (1e-42, False), 'huge': (3e38, False),
    }
    got = tof_valid(f32([v for v, _ in cases.values()]), '32FC1', lo, hi)
    check_table(got, [e for _, e in cases.values()], list(cases), '32FC1 ToF validity')


def test_float_tof_range_min_zero_still_rejects_zero_and_negatives():
    got = tof_valid(f32([0.0, -0.0, -2.0, 1e-30, NAN]), '32FC1', 0.0, 10.0)
    check_table(got, [False, False, False, True, False], ['0', '-0', '-2', '1e-30', 'NaN'],
                'range_min 0: > 0 still required')


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16'])
def test_millimetre_tof_validity_truth_table(encoding):
    cases = {'0 mm (no reading)': (0, False), '1 mm': (1, False), '499 mm': (499, False),
             '500 mm = range_min': (500, True), '2000 mm': (2000, True), '4000 mm = range_max': (4000, True),
             '4001 mm': (4001, False), '65535 mm': (65535, False)}
    mm = np.array([[v for v, _ in cases.values()]], np.uint16)
    check_table(tof_valid(mm, encoding, 0.5, 4.0), [e for _, e in cases.values()], list(cases),
                f'{encoding} ToF validity')


@pytest.mark.parametrize('rng_min, rng_max', [(0.1, 3.3333), (0.0, 65.535), (0.3, 0.3), (0.25, 0.2501)])
def test_millimetres_agree_with_metres_for_every_value(rng_min, rng_max):
    """All 65536 millimetre values: the integer test equals the float test on to_metres' conversion."""
    mm = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = tof_valid(mm, '16UC1', rng_min, rng_max) if rng_min < rng_max else None
    if got is None:
        return
    metres = to_metres(mm, '16UC1')
    expected = tof_valid(metres, '32FC1', rng_min, rng_max)
    diff = np.flatnonzero(got != expected)
    assert diff.size == 0, f'16UC1 and 32FC1 validity differ at mm values {diff[:10].tolist()}'


@pytest.mark.parametrize('dtype, threshold, values, expected', [
    (np.uint8, 100.0, [0, 99, 100, 101, 255], [False, False, True, True, True]),
    (np.uint8, 100.5, [100, 101], [False, True]),
    (np.uint8, 0.0, [0, 1, 255], [True, True, True]),
    (np.uint8, 255.0, [254, 255], [False, True]),
    (np.uint8, 256.0, [255, 0], [False, False]),
    (np.uint16, 1000.0, [0, 999, 1000, 65535], [False, False, True, True]),
    (np.float32, 0.5, [NAN, 0.49999997, 0.5, 0.75, INF, -INF], [False, False, True, True, True, False]),
    (np.float32, 0.0, [0.0, -0.0, -1e-9, NAN], [True, True, False, False]),
])
def test_confidence_threshold_truth_table(dtype, threshold, values, expected):
    conf = np.array([values], dtype)
    tof = np.full(conf.shape, 1.0, np.float32)
    got = tof_valid(tof, '32FC1', 0.1, 4.0, conf, threshold)
    check_table(got, expected, [f'{dtype.__name__} {v} vs {threshold}' for v in values], 'confidence gate')


def test_confidence_gates_only_valid_depth():
    tof = f32([NAN, 0.0, 2.0, 2.0, 9.0])
    conf = np.array([[255, 255, 255, 10, 255]], np.uint8)
    got = tof_valid(tof, '32FC1', 0.1, 4.0, conf, 128)
    check_table(got, [False, False, True, False, False],
                ['NaN, confident', '0, confident', 'valid, confident', 'valid, unconfident',
                 'out of range, confident'], 'depth and confidence combined')


def test_confidence_size_must_match_tof():
    with pytest.raises(GridError, match='confidence image is 4x2 and its ToF depth 8x6'):
        tof_valid(np.ones((6, 8), np.float32), '32FC1', 0.1, 4.0, np.ones((2, 4), np.uint8), 1)


@pytest.mark.parametrize('tof, encoding, message', [
    (np.ones((2, 2), np.float32), '16UC1', "'16UC1' needs uint16"),
    (np.ones((2, 2), np.uint16), '32FC1', "'32FC1' needs float32"),
    (np.ones((2, 2), '>f4'), '32FC1', r'native byte order\), got >f4'),  # bit-pattern selection needs native
    (np.ones((2, 2), np.uint8), 'mono8', 'ToF depth encoding must be one of'),
    (np.ones((2, 2, 3), np.float32), '32FC1', 'must be 2-D'),
])
def test_tof_encoding_errors(tof, encoding, message):
    with pytest.raises(ValueError, match=message):
        tof_valid(tof, encoding, 0.1, 4.0)


# --------------------------------------------------------------------------------------- fusion rule

def test_gated_fusion_truth_table():
    # (label, tof, confidence, student) -> (output, source)
    rows = [
        ('ToF valid, confident', 2.0, 200, 5.0, 2.0, SOURCE_TOF),
        ('ToF valid, confidence == threshold', 2.0, 128, 5.0, 2.0, SOURCE_TOF),
        ('ToF valid, unconfident', 2.0, 127, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF NaN', NAN, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF 0', 0.0, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF beyond range_max', 4.5, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF below range_min', 0.05, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF +inf', INF, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF valid, student NaN', 2.0, 200, NAN, 2.0, SOURCE_TOF),
        ('neither: ToF NaN, student NaN', NAN, 200, NAN, NAN, SOURCE_NONE),
        ('neither: student 0.0', NAN, 200, 0.0, NAN, SOURCE_NONE),
        ('neither: student negative', NAN, 200, -1.0, NAN, SOURCE_NONE),
        ('neither: student +inf', NAN, 200, INF, NAN, SOURCE_NONE),
        ('neither: student -inf', NAN, 200, -INF, NAN, SOURCE_NONE),
        ('unconfident ToF, student 0.0', 2.0, 0, 0.0, NAN, SOURCE_NONE),
    ]
    tof = f32([r[1] for r in rows])
    conf = np.array([[r[2] for r in rows]], np.uint8)
    student = f32([r[3] for r in rows])
    cfg = FusionConfig(range_min=0.1, range_max=4.0, confidence_threshold=128)
    res = fuse(student, tof, '32FC1', conf, cfg)
    labels = [r[0] for r in rows]
    check_table(res.depth, [r[4] for r in rows], labels, 'fused depth')
    check_table(res.source, [r[5] for r in rows], labels, 'source map')
    assert res.depth.dtype == np.float32 and res.source.dtype == np.uint8


def test_millimetre_tof_is_converted_to_metres():
    mm = np.array([[0, 1500, 2345, 9000]], np.uint16)
    student = f32([1.0, 1.0, 1.0, 1.0])
    res = fuse(student, mm, '16UC1', config=FusionConfig(range_max=4.0))
    expected = [1.0, np.float32(1500) * np.float32(0.001), np.float32(2345) * np.float32(0.001), 1.0]
    check_table(res.depth, np.array(expected, np.float32), ['0 mm', '1500 mm', '2345 mm', '9000 mm'],
                '16UC1 fusion')
    check_table(res.source, [2, 1, 1, 2], ['0 mm', '1500 mm', '2345 mm', '9000 mm'], 'source')


def scene(h=48, w=64, seed=0, speckle=0.0):
    """A smooth true depth, a student off by an affine error, a ToF with coherent holes (+ speckle)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    true = (0.8 + 3.0 * yy / h + 0.4 * np.sin(xx / 7.0)).astype(np.float32)
    tof = true.copy()
    tof[(np.sin(xx / 5.0) * np.sin(yy / 4.0)) > 0.5] = np.nan
    tof[true > 3.5] = 0.0
    if speckle:
        tof[rng.random((h, w)) < speckle] = np.nan
    student = ((true - 0.1) / 1.2).astype(np.float32)
    student[rng.random((h, w)) < 0.02] = np.nan
    student[0, :3] = (0.0, -1.0, np.inf)
    return true, tof, student


@pytest.mark.parametrize('mode', ['gated', 'affine', 'median', 'online_affine'])
@pytest.mark.parametrize('speckle', [0.0, 0.5], ids=['coherent holes', 'salt-and-pepper'])
@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
@pytest.mark.parametrize('shape', [(48, 64), (301, 300)], ids=['one chunk', 'two chunks'])
def test_invariants(mode, speckle, encoding, shape):
    """No valid ToF pixel is replaced; nothing is 0.0; the source map matches the values."""
    _, tof, student = scene(*shape, speckle=speckle)
    if encoding == '16UC1':
        tof = np.nan_to_num(np.round(tof * 1000), nan=0).astype(np.uint16)
    conf = np.random.default_rng(1).integers(0, 256, tof.shape).astype(np.uint8)
    cfg = FusionConfig(mode=mode, alpha=1.3, beta=-0.4, range_min=0.2, range_max=3.0,
                       confidence_threshold=40, median_min_pixels=10, online_min_inliers=10)
    fuser = Fuser(cfg)
    for _ in range(3):  # reused buffers and the online state across frames
        res = fuser.fuse(student, tof, encoding, conf)
    valid = tof_valid(tof, encoding, 0.2, 3.0, conf, 40)
    tof_m = to_metres(tof, encoding)
    out, src = res.depth, res.source
    assert np.array_equal(out[valid], tof_m[valid]), 'a valid, confident ToF pixel was changed'
    assert not np.any(out == 0.0), f'{np.count_nonzero(out == 0.0)} pixels published as 0.0'
    assert np.array_equal(src == SOURCE_TOF, valid), 'source map 1 differs from ToF validity'
    assert np.array_equal(src == SOURCE_NONE, np.isnan(out)), 'source map 0 differs from NaN pixels'
    student_px = src == SOURCE_STUDENT
    assert np.all(np.isfinite(out[student_px]) & (out[student_px] > 0)), 'student pixel without a value'
    a, b = np.float32(res.correction.alpha), np.float32(res.correction.beta)
    corrected = student * a + b if (a, b) != (1, 0) else student
    assert np.array_equal(out[student_px], corrected[student_px]), 'student pixels are not alpha * d + beta'


@pytest.mark.parametrize('shape', [(48, 64), (301, 300), (480, 640)])  # 1, 2 uneven, 5 chunks
def test_gated_equals_np_where_for_coherent_and_fragmented_masks(shape):
    """The chunked bit-pattern selection equals np.where, whatever the mask's pattern."""
    for speckle in (0.0, 0.5):
        _, tof, student = scene(*shape, speckle=speckle)
        student = np.abs(np.nan_to_num(student, nan=1.0, posinf=1.0)) + np.float32(0.5)  # all valid
        cfg = FusionConfig(range_min=0.1, range_max=3.0)
        res = fuse(student, tof, config=cfg)
        valid = tof_valid(tof, '32FC1', 0.1, 3.0)
        np.testing.assert_array_equal(res.depth, np.where(valid, tof, student))
        np.testing.assert_array_equal(res.source, np.where(valid, SOURCE_TOF, SOURCE_STUDENT))


# --------------------------------------------------------------------------------------- corrections

def test_affine_correction_math_and_negative_results_become_nan():
    student = f32([1.0, 2.0, 0.1, 3.0])
    tof = f32([NAN, NAN, NAN, 1.0])
    res = fuse(student, tof, config=FusionConfig(mode='affine', alpha=1.5, beta=-0.2))
    expected = student * np.float32(1.5) + np.float32(-0.2)
    expected[0, 2] = np.nan  # 1.5 * 0.1 - 0.2 < 0: invalid, not a negative depth
    expected[0, 3] = 1.0     # ToF wins, uncorrected
    check_table(res.depth, expected, ['1 m', '2 m', '0.1 m -> negative', 'ToF'], 'affine')
    check_table(res.source, [2, 2, 0, 1], ['1 m', '2 m', '0.1 m -> negative', 'ToF'], 'affine source')
    assert (res.correction.alpha, res.correction.beta, res.correction.status) == (1.5, -0.2, 'calibrated')


def test_median_scale_on_constructed_data():
    rng = np.random.default_rng(3)
    student = rng.uniform(0.5, 3.0, (40, 50)).astype(np.float32)
    tof = (student * np.float32(1.25)).astype(np.float32)
    tof[:, 25:] = np.nan  # ToF covers half; the other half gets the scaled student
    cfg = FusionConfig(mode='median', range_max=10.0, median_min_pixels=100, fit_sample_size=0)
    res = fuse(student, tof, config=cfg)
    assert res.correction.status == 'median' and res.correction.pixels == 1000
    assert res.correction.alpha == pytest.approx(1.25, rel=1e-6) and res.correction.beta == 0.0
    np.testing.assert_allclose(res.depth[:, 25:], student[:, 25:] * 1.25, rtol=1e-6)


def test_median_needs_minimum_pixel_count():
    student = np.full((10, 10), 2.0, np.float32)
    tof = np.full((10, 10), np.nan, np.float32)
    tof[0, :5] = 3.0  # 5 overlapping pixels
    res = fuse(student, tof, config=FusionConfig(mode='median', median_min_pixels=6, fit_sample_size=0))
    assert (res.correction.alpha, res.correction.status) == (1.0, 'none'), res.correction
    assert 'too few pixels' in res.correction.detail and '5 < 6' in res.correction.detail
    assert res.depth[5, 5] == 2.0
    res = fuse(student, tof, config=FusionConfig(mode='median', median_min_pixels=5, fit_sample_size=0))
    assert res.correction.alpha == pytest.approx(1.5) and res.depth[5, 5] == pytest.approx(3.0)


def affine_frame(alpha, beta, outliers=0.3, shape=(60, 80), seed=0):
    rng = np.random.default_rng(seed)
    student = rng.uniform(0.5, 3.5, shape).astype(np.float32)
    tof = (alpha * student.astype(np.float64) + beta).astype(np.float32)
    bad = rng.random(shape) < outliers
    tof[bad] = (tof[bad] * rng.uniform(1.4, 2.0, bad.sum())).astype(np.float32)  # multipath-like outliers
    return student, tof


def test_online_affine_recovers_alpha_beta_despite_outliers():
    student, tof = affine_frame(1.2, -0.15)
    cfg = FusionConfig(mode='online_affine', range_max=20.0, online_smoothing=0.0, online_min_inliers=50,
                       online_outlier_threshold=0.1, fit_sample_size=2000)
    res = fuse(student, tof, config=cfg)
    c = res.correction
    assert c.status == 'fit', c
    assert c.alpha == pytest.approx(1.2, abs=1e-3) and c.beta == pytest.approx(-0.15, abs=3e-3), c
    assert c.inlier_share == pytest.approx(0.7, abs=0.05), c
    assert c.pixels == 2000


def test_online_affine_smooths_over_frames_from_the_calibration():
    student, tof = affine_frame(1.2, -0.15, outliers=0.0)
    cfg = FusionConfig(mode='online_affine', alpha=1.0, beta=0.0, range_max=20.0, online_smoothing=0.5,
                       online_min_inliers=50)
    fuser = Fuser(cfg)
    alphas = [fuser.fuse(student, tof).correction.alpha for _ in range(12)]
    assert alphas[0] == pytest.approx(1.1, abs=1e-3), 'first frame: halfway from calibration (1.0) to fit'
    assert alphas[1] == pytest.approx(1.15, abs=1e-3)
    assert alphas[-1] == pytest.approx(1.2, abs=1e-3)
    fuser.configure(FusionConfig(**{**cfg.__dict__, 'alpha': 0.9}))  # new calibration: restart from it
    assert fuser.fuse(student, tof).correction.alpha == pytest.approx(0.5 * 0.9 + 0.5 * 1.2, abs=1e-3)


@pytest.mark.parametrize('case, reason', [
    ('constant student depth', 'ill-conditioned'),
    ('too few overlapping pixels', 'too few pixels'),
    ('no ToF', 'no ToF'),
])
def test_online_affine_falls_back_to_calibrated_values(case, reason):
    student, tof = affine_frame(1.2, -0.15, outliers=0.0)
    if case == 'constant student depth':
        student[:] = 2.0
        tof[:] = 2.3
    elif case == 'too few overlapping pixels':
        tof[5:] = np.nan
    cfg = FusionConfig(mode='online_affine', alpha=1.05, beta=0.02, range_max=20.0, online_smoothing=0.0,
                       online_min_inliers=500, fit_sample_size=0)
    res = fuse(student, None if case == 'no ToF' else tof, config=cfg)
    c = res.correction
    assert c.status == 'fallback' and reason in c.detail, c
    assert (c.alpha, c.beta) == (1.05, 0.02)
    valid = ~np.isnan(tof) if case != 'no ToF' else np.zeros(tof.shape, bool)
    np.testing.assert_array_equal(res.depth[~valid], student[~valid] * np.float32(1.05) + np.float32(0.02))


# --------------------------------------------------------------------------------------------- grids

def test_grid_scale_and_errors():
    assert grid_scale((480, 640), (240, 320)) == (1, 2)
    assert grid_scale((240, 320), (480, 640)) == (2, 1)
    assert grid_scale((240, 320), (240, 320)) == (1, 1)
    assert grid_scale((100, 100), (300, 300)) == (3, 1)
    for src, dst in (((480, 640), (200, 300)), ((480, 640), (240, 640)), ((480, 640), (160, 320))):
        with pytest.raises(GridError) as info:
            grid_scale(src, dst, 'ToF depth', 'student depth')
        text = str(info.value)
        assert f'ToF depth is {src[1]}x{src[0]}' in text and f'student depth {dst[1]}x{dst[0]}' in text, text


def test_resample_nearest_down_and_up():
    img = np.arange(36, dtype=np.float32).reshape(6, 6)
    np.testing.assert_array_equal(resample_nearest(img, (3, 3)), img[1::2, 1::2])
    np.testing.assert_array_equal(resample_nearest(img, (2, 2)), img[[1, 4]][:, [1, 4]])  # factor 3: centre
    up = resample_nearest(img[:2, :3], (4, 6))
    np.testing.assert_array_equal(up, [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2],
                                       [6, 6, 7, 7, 8, 8], [6, 6, 7, 7, 8, 8]])
    assert resample_nearest(img, (6, 6)) is img


def test_tof_at_twice_the_student_size_is_sampled_not_interpolated():
    """The demo layout: 640x480 16UC1 ToF, 320x240 student: output on the student grid, ToF by nearest."""
    rng = np.random.default_rng(5)
    mm = rng.integers(300, 3000, (480, 640)).astype(np.uint16)
    mm[rng.random(mm.shape) < 0.3] = 0  # invalid pixels scattered among valid ones
    conf = rng.integers(0, 256, mm.shape).astype(np.uint8)
    student = rng.uniform(0.5, 5.0, (240, 320)).astype(np.float32)
    cfg = FusionConfig(range_min=0.2, range_max=4.0, confidence_threshold=100)
    res = fuse(student, mm, '16UC1', conf, cfg)
    assert res.depth.shape == (240, 320)
    expected = fuse(student, np.ascontiguousarray(mm[1::2, 1::2]), '16UC1',
                    np.ascontiguousarray(conf[1::2, 1::2]), cfg)
    np.testing.assert_array_equal(res.depth, expected.depth)
    np.testing.assert_array_equal(res.source, expected.source)
    tof_px = res.source == SOURCE_TOF
    assert np.all(np.isin(np.round(res.depth[tof_px] * 1000).astype(np.uint16), mm[1::2, 1::2])), \
        'a ToF output value is not one of the sampled ToF readings'


def test_smaller_tof_is_repeated_and_output_grid_tof():
    tof = f32([[1.0, NAN], [2.0, 3.0]]).reshape(2, 2)
    student = np.full((4, 4), 7.0, np.float32)
    res = fuse(student, tof, config=FusionConfig(range_max=10.0))
    np.testing.assert_array_equal(res.depth, [[1, 1, 7, 7], [1, 1, 7, 7], [2, 2, 3, 3], [2, 2, 3, 3]])
    np.testing.assert_array_equal(res.source, [[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1]])
    # output_grid 'tof': the student is brought to the ToF grid instead.
    student = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    res = fuse(student, tof, config=FusionConfig(range_max=10.0, output_grid='tof'))
    np.testing.assert_array_equal(res.depth, [[1.0, student[1, 3]], [2.0, 3.0]])
    big_tof = np.full((8, 8), np.nan, np.float32)
    big_tof[0, 0] = 1.0
    res = fuse(student, big_tof, config=FusionConfig(range_max=10.0, output_grid='tof'))
    assert res.depth.shape == (8, 8) and res.depth[0, 0] == 1.0 and res.depth[0, 1] == student[0, 0]
    assert res.depth[7, 7] == student[3, 3]


def test_mismatched_sizes_name_both():
    with pytest.raises(GridError, match='ToF depth is 640x480 and student depth 300x200'):
        fuse(np.ones((200, 300), np.float32), np.ones((480, 640), np.uint16), '16UC1')
    with pytest.raises(GridError, match='student depth is 300x200 and ToF depth 640x480'):
        fuse(np.ones((200, 300), np.float32), np.ones((480, 640), np.uint16), '16UC1',
             config=FusionConfig(output_grid='tof'))


# ------------------------------------------------------------------------------- one-sided frames

def test_student_only_and_tof_only():
    student = f32([1.0, NAN, 0.0])
    res = fuse(student, None)
    check_table(res.depth, [1.0, NAN, NAN], ['valid', 'NaN', '0.0'], 'student-only')
    check_table(res.source, [2, 0, 0], ['valid', 'NaN', '0.0'], 'student-only source')
    mm = np.array([[1000, 0], [2000, 3000]], np.uint16)
    res = fuse(None, mm, '16UC1')
    np.testing.assert_array_equal(res.source, [[1, 0], [1, 1]])
    assert np.isnan(res.depth[0, 1]) and res.depth[1, 0] == np.float32(2000) * np.float32(0.001)
    res = fuse(None, mm, '16UC1', shape=(1, 1))  # onto a coarser (the last student) grid
    assert res.depth.shape == (1, 1) and res.source[0, 0] == SOURCE_TOF


def test_input_errors():
    with pytest.raises(ValueError, match='nothing to fuse'):
        fuse(None, None)
    with pytest.raises(ValueError, match='student depth must be float32'):
        fuse(np.ones((2, 2), np.float64))
    with pytest.raises(ValueError, match='range_min .* smaller than range_max'):
        FusionConfig(range_min=5.0, range_max=1.0)
    with pytest.raises(ValueError, match='mode must be one of'):
        FusionConfig(mode='magic')


def test_fuser_reuses_buffers_and_follows_shape_changes():
    fuser = Fuser(FusionConfig(range_max=10.0))
    a = fuser.fuse(np.ones((4, 4), np.float32), np.full((4, 4), 2.0, np.float32))
    assert a.depth.shape == (4, 4) and np.all(a.depth == 2.0)
    b = fuser.fuse(np.ones((6, 8), np.float32), None)
    assert b.depth.shape == (6, 8) and np.all(b.depth == 1.0)
    c = fuser.fuse(np.ones((6, 8), np.float32), np.full((6, 8), 2.0, np.float32))
    assert c.depth is b.depth, 'expected the output array to be reused for the same shape'
    assert np.all(c.depth == 2.0)
