"""depth_fusion.fusion and depth_fusion.kernel: truth tables for every rule, the compiled pass against the
numpy specification, corrections, grids of any size, local alignment."""

from pathlib import Path

import numpy as np
import pytest

from depth_fusion import kernel
from depth_fusion.fusion import (  # the kernel's inputs, as Fuser makes them
    SOURCE_NONE,
    SOURCE_STUDENT,
    SOURCE_TOF,
    Fuser,
    FusionConfig,
    _index_map,
    _tof_rule,
    fuse,
    resample_nearest,
    tof_valid,
)
from rc_perception.camera import Intrinsics, scale_intrinsics
from rc_perception.depth import to_metres

NAN, INF = np.nan, np.inf
F32 = np.float32
POS_MIN = np.nextafter(F32(0), F32(1))  # the smallest positive float32 (a denormal), written out here
FLT_MAX = np.finfo(np.float32).max        # the largest finite float32
BOTH = pytest.mark.parametrize('compiled', [True, False], ids=['numba', 'numpy'])
NO_GATE = {'min_student_delta1': 0.0}


def f32(values) -> np.ndarray:
    return np.array(values, np.float32).reshape(1, -1)


def check_table(got, expected, labels, what):
    got, expected = np.asarray(got).ravel(), np.asarray(expected).ravel()
    wrong = [f'{label}: expected {e}, got {g}' for label, g, e in zip(labels, got, expected, strict=True)
             if not (g == e or (np.issubdtype(type(e), np.floating) and np.isnan(e) and np.isnan(g)))]
    assert not wrong, f'{what}:\n' + '\n'.join(wrong)


def test_the_compiled_kernel_is_in_use_here():
    assert kernel.COMPILED, f'numba should compile here: {kernel.COMPILE_PROBLEM}'
    assert Fuser().compiled and not Fuser(compiled=False).compiled


# ------------------------------------------------------------------------------------- ToF validity

def test_float_tof_validity_truth_table():
    lo, hi = 0.5, 4.0
    cases = {
        'NaN': (NAN, False), '+inf': (INF, False), '-inf': (-INF, False), '0.0': (0.0, False),
        '-0.0': (-0.0, False), 'negative': (-1.0, False),
        'below range_min': (np.nextafter(F32(0.5), F32(0)), False),
        'range_min exactly': (0.5, True), 'just above range_min': (np.nextafter(F32(0.5), F32(1)), True),
        'inside': (2.0, True), 'just below range_max': (np.nextafter(F32(4.0), F32(0)), True),
        'range_max exactly': (4.0, True), 'above range_max': (np.nextafter(F32(4.0), F32(5)), False),
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
             '500 mm = range_min': (500, True), '501 mm': (501, True), '2000 mm': (2000, True),
             '3999 mm': (3999, True), '4000 mm = range_max': (4000, True), '4001 mm': (4001, False),
             '65535 mm': (65535, False)}
    mm = np.array([[v for v, _ in cases.values()]], np.uint16)
    check_table(tof_valid(mm, encoding, 0.5, 4.0), [e for _, e in cases.values()], list(cases),
                f'{encoding} ToF validity')


@pytest.mark.parametrize('rng_min, rng_max', [(0.1, 3.3333), (0.0, 65.535), (0.25, 0.2501), (0.0003, 0.0004)])
def test_millimetres_agree_with_metres_for_every_value(rng_min, rng_max):
    """All 65536 millimetre values: the integer test equals the float test on to_metres' conversion."""
    mm = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = tof_valid(mm, '16UC1', rng_min, rng_max)
    expected = tof_valid(to_metres(mm, '16UC1'), '32FC1', rng_min, rng_max)
    diff = np.flatnonzero(got != expected)
    assert diff.size == 0, f'16UC1 and 32FC1 validity differ at mm values {diff[:10]}'
    m = np.arange(65536, dtype=np.float32) / F32(1000)
    assert got.sum() == np.count_nonzero((m >= F32(rng_min)) & (m <= F32(rng_max)) & (m > 0))


@pytest.mark.parametrize('dtype, threshold, values, expected', [
    (np.uint8, 100.0, [0, 99, 100, 101, 255], [False, False, True, True, True]),
    (np.uint8, 100.5, [100, 101], [False, True]),
    (np.uint8, 0.0, [0, 1, 255], [True, True, True]),
    (np.uint8, 255.0, [254, 255], [False, True]),
    (np.uint8, 256.0, [255, 0], [False, False]),
    (np.uint16, 1000.0, [0, 999, 1000, 1001, 65535], [False, False, True, True, True]),
    (np.float32, 0.5, [NAN, 0.49999997, 0.5, 0.75, INF, -INF], [False, False, True, True, True, False]),
    (np.float32, 0.7, [F32(0.7), np.nextafter(F32(0.7), F32(0))], [True, False]),  # float32(0.7) < 0.7
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


@pytest.mark.parametrize('tof, encoding, conf, message', [
    (np.ones((2, 2), np.float32), '16UC1', None, "'16UC1' needs uint16"),
    (np.ones((2, 2), np.uint16), '32FC1', None, "'32FC1' needs float32"),
    (np.ones((2, 2), '>f4'), '32FC1', None, r'native byte order\), got >f4'),
    (np.ones((2, 2), np.uint8), 'mono8', None, 'ToF depth encoding must be one of'),
    (np.ones((2, 2, 3), np.float32), '32FC1', None, 'must be 2-D'),
    (np.ones((6, 8), np.float32), '32FC1', np.ones((2, 4), np.uint8), 'confidence image is 4x2 and its ToF '
                                                                        'depth 8x6'),
    (np.ones((2, 2), np.float32), '32FC1', np.ones((2, 2), np.int8), 'must be uint8, uint16 or float32'),
])
def test_tof_input_errors(tof, encoding, conf, message):
    with pytest.raises(ValueError, match=message):
        tof_valid(tof, encoding, 0.1, 4.0, conf)


# --------------------------------------------------------------------------------------- fusion rule

@BOTH
def test_gated_fusion_truth_table(compiled):
    # (label, tof, confidence, student) -> (output, source)
    rows = [
        ('ToF valid, confident', 2.0, 200, 5.0, 2.0, SOURCE_TOF),
        ('ToF valid, confidence == threshold', 2.0, 128, 5.0, 2.0, SOURCE_TOF),
        ('ToF valid, confidence 1 below', 2.0, 127, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF NaN', NAN, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF 0', 0.0, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF range_max exactly', 4.0, 200, 5.0, 4.0, SOURCE_TOF),
        ('ToF beyond range_max', 4.5, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF range_min exactly', 0.1, 200, 5.0, F32(0.1), SOURCE_TOF),
        ('ToF below range_min', 0.05, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF +inf', INF, 200, 5.0, 5.0, SOURCE_STUDENT),
        ('ToF valid, student NaN', 2.0, 200, NAN, 2.0, SOURCE_TOF),
        ('neither: ToF NaN, student NaN', NAN, 200, NAN, NAN, SOURCE_NONE),
        ('neither: student 0.0', NAN, 200, 0.0, NAN, SOURCE_NONE),
        ('neither: student negative', NAN, 200, -1.0, NAN, SOURCE_NONE),
        ('neither: student +inf', NAN, 200, INF, NAN, SOURCE_NONE),
        ('neither: student -inf', NAN, 200, -INF, NAN, SOURCE_NONE),
        ('student tiny but positive', NAN, 200, 1e-30, F32(1e-30), SOURCE_STUDENT),
        ('student the smallest positive float32', NAN, 200, POS_MIN, POS_MIN, SOURCE_STUDENT),
        ('student the largest finite float32', NAN, 200, FLT_MAX, FLT_MAX, SOURCE_STUDENT),
        ('unconfident ToF, student 0.0', 2.0, 0, 0.0, NAN, SOURCE_NONE),
    ]
    tof = f32([r[1] for r in rows])
    conf = np.array([[r[2] for r in rows]], np.uint8)
    student = f32([r[3] for r in rows])
    cfg = FusionConfig(range_min=0.1, range_max=4.0, confidence_threshold=128, **NO_GATE)
    res = Fuser(cfg, compiled=compiled).fuse(student, tof, '32FC1', conf)
    labels = [r[0] for r in rows]
    check_table(res.depth, [r[4] for r in rows], labels, 'fused depth')
    check_table(res.source, [r[5] for r in rows], labels, 'source map')
    assert res.depth.dtype == np.float32 and res.source.dtype == np.uint8
    assert (res.tof_pixels, res.student_pixels) == (5, 9), (res.tof_pixels, res.student_pixels)


@BOTH
def test_float_confidence_is_compared_in_float32(compiled):
    """A 32FC1 confidence of 0.7 (float32(0.7) < 0.7) passes the threshold 0.7 the user typed."""
    conf = np.array([[F32(0.7), np.nextafter(F32(0.7), F32(0))]], np.float32)
    cfg = FusionConfig(range_max=4.0, confidence_threshold=0.7, **NO_GATE)
    res = Fuser(cfg, compiled=compiled).fuse(f32([9.0, 9.0]), f32([2.0, 2.0]), '32FC1', conf)
    check_table(res.source, [SOURCE_TOF, SOURCE_STUDENT], ['0.7', 'just below 0.7'], 'float32 confidence')


@BOTH
def test_millimetre_tof_is_converted_to_metres(compiled):
    mm = np.array([[0, 1500, 2345, 9000]], np.uint16)
    student = f32([1.0, 1.0, 1.0, 1.0])
    res = Fuser(FusionConfig(range_max=4.0, **NO_GATE), compiled=compiled).fuse(student, mm, '16UC1')
    expected = [1.0, F32(1500) / F32(1000), F32(2345) / F32(1000), 1.0]
    check_table(res.depth, np.array(expected, np.float32), ['0 mm', '1500 mm', '2345 mm', '9000 mm'], '16UC1')
    check_table(res.source, [2, 1, 1, 2], ['0 mm', '1500 mm', '2345 mm', '9000 mm'], 'source')


SPECIALS = np.array([NAN, INF, -INF, 0.0, -0.0, -1.0, 0.1, 4.0, 1e-42, 3e38], np.float32)


def random_inputs(rng, tof_dtype, conf_dtype, student_shape, tof_shape):
    student = rng.uniform(-0.5, 6.0, student_shape).astype(np.float32)
    student.flat[rng.integers(0, student.size, student.size // 4)] = rng.choice(SPECIALS, student.size // 4)
    if tof_dtype == np.uint16:
        tof = rng.integers(0, 6000, tof_shape).astype(np.uint16)
        tof.flat[:3] = (100, 4000, 65535)  # range_min, range_max exactly, the largest
    else:
        tof = rng.uniform(-0.5, 6.0, tof_shape).astype(np.float32)
        tof.flat[rng.integers(0, tof.size, tof.size // 4)] = rng.choice(SPECIALS, tof.size // 4)
    conf = (rng.integers(0, 256, tof_shape) if conf_dtype != np.float32 else
            rng.choice([NAN, 0.0, 49.0, 50.0, 50.5, 200.0], tof_shape)).astype(conf_dtype)
    conf.flat[:2] = (50, 49)  # at the threshold and one below
    return student, tof, conf


@pytest.mark.parametrize('tof_dtype', [np.uint16, np.float32])
@pytest.mark.parametrize('conf_dtype', [np.uint8, np.uint16, np.float32])
def test_compiled_pass_equals_the_numpy_specification_on_random_inputs(tof_dtype, conf_dtype):
    rng = np.random.default_rng(hash((tof_dtype.__name__, conf_dtype.__name__)) % 2 ** 32)
    cfg = FusionConfig(range_min=0.1, range_max=4.0, confidence_threshold=50.0)
    encoding = '16UC1' if tof_dtype == np.uint16 else '32FC1'
    for grid, student_shape, tof_shape in (((24, 32), (24, 32), (48, 64)), ((18, 32), (18, 32), (36, 64)),
                                           ((25, 31), (30, 50), (25, 31)), ((40, 40), (20, 20), (13, 17))):
        # NaN alpha: no student reading anywhere (how a withheld fill is fused); step: the accuracy's rows
        for alpha, beta, step in ((1.0, 0.0, 1), (1.3, -0.4, 3), (NAN, 0.0, 1)):
            student, tof, conf = random_inputs(rng, tof_dtype, conf_dtype, student_shape, tof_shape)
            smap = (_index_map(student_shape[0], grid[0]), _index_map(student_shape[1], grid[1]))
            tmap = (_index_map(tof_shape[0], grid[0]), _index_map(tof_shape[1], grid[1]))
            lo, hi, tscale, cthr = _tof_rule(tof, encoding, conf, cfg)
            outs = []
            for run in (kernel.fuse_compiled, kernel.fuse_reference):
                out, src = np.empty(grid, np.float32), np.empty(grid, np.uint8)
                counts = run(student, *smap, tof, *tmap, conf, cthr, lo, hi, tscale, F32(alpha), F32(beta),
                             step, out, src)
                outs.append((out, src, counts))
            (a, sa, ca), (b, sb, cb) = outs
            what = f'grid {grid}, student {student_shape}, ToF {tof_shape}, alpha {alpha}, step {step}'
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f'{what}: depth bits differ'
            assert np.array_equal(sa, sb), f'{what}: source maps differ'
            assert ca[:4] == cb[:4], f'{what}: counts {ca[:4]} != {cb[:4]}'
            assert ca[4] == pytest.approx(cb[4], rel=1e-5), f'{what}: AbsRel sums {ca[4]} != {cb[4]}'
            assert ca[0] > 0 and (ca[1] > 0 or np.isnan(alpha)), f'{what}: want both sources'
            assert ca[2] > 0 or np.isnan(alpha), f'{what}: the inputs should exercise the accuracy'


@pytest.mark.parametrize('mode', ['gated', 'affine', 'median', 'online_affine', 'local'])
@pytest.mark.parametrize('speckle', [0.0, 0.5], ids=['coherent holes', 'salt-and-pepper'])
@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_invariants(mode, speckle, encoding):
    """No valid ToF pixel is replaced; nothing is 0.0; the source map matches the values."""
    _, tof, student = scene(48, 64, speckle=speckle)
    if encoding == '16UC1':
        tof = np.nan_to_num(np.round(tof * 1000), nan=0).astype(np.uint16)
    conf = np.random.default_rng(1).integers(0, 256, tof.shape).astype(np.uint8)
    cfg = FusionConfig(mode=mode, alpha=1.3, beta=-0.4, range_min=0.2, range_max=3.0, confidence_threshold=40,
                       median_min_pixels=10, online_min_inliers=10, local_min_ring=3, **NO_GATE)
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
    if mode != 'local':
        a, b = F32(res.correction.alpha), F32(res.correction.beta)
        assert np.array_equal(out[student_px], (student * a + b)[student_px]), 'student pixels != a d + b'


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


# --------------------------------------------------------------------------------------- corrections

def test_affine_correction_math_and_negative_results_become_nan():
    student = f32([1.0, 2.0, 0.1, 3.0])
    tof = f32([NAN, NAN, NAN, 1.0])
    res = fuse(student, tof, config=FusionConfig(mode='affine', alpha=1.5, beta=-0.2, **NO_GATE))
    expected = [F32(1.5) + F32(-0.2), F32(2.0) * F32(1.5) + F32(-0.2), NAN, 1.0]  # 0.15 - 0.2 < 0: invalid
    labels = ['1 m', '2 m', '0.1 m -> negative', 'ToF']
    check_table(res.depth, np.array(expected, np.float32), labels, 'affine')
    check_table(res.source, [2, 2, 0, 1], labels, 'affine source')
    assert (res.correction.alpha, res.correction.beta, res.correction.status) == (1.5, -0.2, 'calibrated')


def test_median_scale_on_constructed_data():
    rng = np.random.default_rng(3)
    student = rng.uniform(0.5, 3.0, (40, 50)).astype(np.float32)
    tof = (student * F32(1.25)).astype(np.float32)
    tof[:, 25:] = np.nan  # ToF covers half; the other half gets the scaled student
    cfg = FusionConfig(mode='median', range_max=10.0, median_min_pixels=100, fit_sample_size=0, **NO_GATE)
    res = fuse(student, tof, config=cfg)
    assert res.correction.status == 'median' and res.correction.pixels == 1000
    assert res.correction.alpha == pytest.approx(1.25, rel=1e-6) and res.correction.beta == 0.0
    np.testing.assert_allclose(res.depth[:, 25:], student[:, 25:] * 1.25, rtol=1e-6)


def test_median_needs_minimum_pixel_count():
    student = np.full((10, 10), 2.0, np.float32)
    tof = np.full((10, 10), np.nan, np.float32)
    tof[0, :5] = 3.0  # 5 overlapping pixels
    cfg = dict(mode='median', fit_sample_size=0, trust_min_overlap=0.0, **NO_GATE)
    res = fuse(student, tof, config=FusionConfig(median_min_pixels=6, **cfg))
    assert (res.correction.alpha, res.correction.status) == (1.0, 'none'), res.correction
    assert 'too few pixels' in res.correction.detail and '5 < 6' in res.correction.detail
    assert res.depth[5, 5] == 2.0
    res = fuse(student, tof, config=FusionConfig(median_min_pixels=5, **cfg))
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
                       online_outlier_threshold=0.1, fit_sample_size=2000, **NO_GATE)
    c = fuse(student, tof, config=cfg).correction
    assert c.status == 'fit', c
    assert c.alpha == pytest.approx(1.2, abs=1e-3) and c.beta == pytest.approx(-0.15, abs=3e-3), c
    assert c.inlier_share == pytest.approx(0.7, abs=0.05), c
    assert c.pixels == 2000


def test_online_affine_smooths_over_frames_from_the_calibration():
    student, tof = affine_frame(1.2, -0.15, outliers=0.0)
    cfg = FusionConfig(mode='online_affine', alpha=1.0, beta=0.0, range_max=20.0, online_smoothing=0.5,
                       online_min_inliers=50, **NO_GATE)
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
                       online_min_inliers=500, fit_sample_size=0, **NO_GATE)
    res = fuse(student, None if case == 'no ToF' else tof, config=cfg)
    c = res.correction
    assert c.status == 'fallback' and reason in c.detail, c
    assert (c.alpha, c.beta) == (1.05, 0.02)
    valid = ~np.isnan(tof) if case != 'no ToF' else np.zeros(tof.shape, bool)
    np.testing.assert_array_equal(res.depth[~valid], student[~valid] * F32(1.05) + F32(0.02))


# -------------------------------------------------------------------------------------- local alignment

def hole_scales(tof_ok, tof_m, student, labels, min_ring):
    """kernel.hole_scales on a frame fused from a valid ToF ``tof_m`` (where ``tof_ok``) and ``student``
    (identity maps, no correction)."""
    source = np.where(tof_ok, SOURCE_TOF, SOURCE_STUDENT).astype(np.uint8)
    out = np.where(tof_ok, tof_m, student).astype(np.float32)
    maps = _index_map(*tof_ok.shape[:1] * 2), _index_map(*tof_ok.shape[1:] * 2)
    return kernel.hole_scales(out, source, student, *maps, F32(1.0), F32(0.0), labels, min_ring)


def test_hole_labels_and_border_ratios_by_hand():
    tof_ok = np.array([[1, 1, 1, 1, 1, 1],
                       [1, 0, 0, 1, 1, 1],
                       [1, 0, 0, 1, 0, 1],
                       [1, 1, 1, 1, 1, 0]], bool)
    tof_m = np.where(tof_ok, F32(3.0), F32(NAN)).astype(np.float32)
    tof_m[0, 1] = 6.0  # above the first hole: ratio 6 / 1.5 = 4, the others 3 / 1.5 = 2
    corrected = np.full(tof_ok.shape, 1.5, np.float32)
    labels = np.zeros(tof_ok.shape, np.int32)
    scales = hole_scales(tof_ok, tof_m, corrected, labels, 1)
    np.testing.assert_array_equal(labels, [[0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 2, 0],
                                           [0, 0, 0, 0, 0, 3]])
    # hole 1 is bordered by 8 valid pixels (ratios 4, 2 x 7): median 2; holes 2 and 3 by 4 and 2 pixels.
    np.testing.assert_array_equal(scales[1:], [2.0, 2.0, 2.0])
    assert np.isnan(hole_scales(tof_ok, tof_m, corrected, labels, 3)[3]), '2 border pixels < 3'
    # a U-shaped hole whose arms meet only at the bottom is one hole (union of provisional labels)
    u = np.ones((4, 5), bool)
    u[0:3, 1] = u[0:3, 3] = u[2, 1:4] = False
    labels = np.zeros(u.shape, np.int32)
    hole_scales(u, np.where(u, F32(1), F32(NAN)).astype(np.float32), np.ones(u.shape, np.float32), labels, 1)
    assert set(np.unique(labels[~u])) == {1} and np.all(labels[u] == 0), labels


def test_local_mode_scales_each_hole_by_its_border():
    """True depth: a ramp. The student is right except in two regions off by x0.5 and x1.5, each a little
    larger than one of the ToF's two holes: the border of each hole sees the region's error, so local
    alignment recovers the truth in the holes; a frame fit cannot."""
    yy, xx = np.mgrid[:60, :80]
    true = (1.0 + 2.0 * xx / 80 + 0.5 * yy / 60).astype(np.float32)
    student = true.copy()
    student[7:28, 7:33] *= F32(0.5)
    student[32:53, 42:73] *= F32(1.5)
    tof = true.copy()
    tof[10:25, 10:30] = np.nan
    tof[35:50, 45:70] = np.nan
    cfg = dict(range_max=10.0, online_smoothing=0.0, online_min_inliers=50, local_min_ring=10, **NO_GATE)
    local = fuse(student, tof, config=FusionConfig(mode='local', **cfg))
    frame = fuse(student, tof, config=FusionConfig(mode='online_affine', **cfg))
    assert (local.correction.holes, local.correction.holes_scaled) == (2, 2), local.correction
    for name, (rows, cols) in {'x0.5 hole': (slice(10, 25), slice(10, 30)),
                               'x1.5 hole': (slice(35, 50), slice(45, 70))}.items():
        err_local = np.abs(local.depth[rows, cols] - true[rows, cols]).max()
        err_frame = np.abs(frame.depth[rows, cols] - true[rows, cols]).max()
        assert err_local < 0.06 and err_frame > 0.4, f'{name}: local error {err_local}, frame fit {err_frame}'
    assert np.array_equal(local.source == SOURCE_TOF, np.isfinite(tof)), 'ToF pixels stay ToF'


def test_local_mode_without_the_compiled_kernel_uses_the_frame_fit():
    _, tof, student = scene()
    cfg = FusionConfig(mode='local', online_min_inliers=10, **NO_GATE)
    res = Fuser(cfg, compiled=False).fuse(student, tof)
    assert (res.correction.holes, res.correction.holes_scaled) == (0, 0)
    px = res.source == SOURCE_STUDENT
    a, b = F32(res.correction.alpha), F32(res.correction.beta)
    assert np.array_equal(res.depth[px], (student * a + b)[px])


# --------------------------------------------------------------------------------------------- grids

@pytest.mark.parametrize('src, dst, expected', [
    (6, 3, [1, 3, 5]),          # decimation by 2: pixel 2i + 1
    (6, 2, [1, 4]),             # by 3: the centre pixel 3i + 1
    (2, 4, [0, 0, 1, 1]),       # upsampling by 2: each pixel twice
    (5, 5, [0, 1, 2, 3, 4]),
    (848, 320, None),           # any ratio: the nearest to the area centre
])
def test_resample_nearest_picks_these_pixels(src, dst, expected):
    img = np.arange(src, dtype=np.float32)[None, :].repeat(2, 0)
    got = resample_nearest(img, (2, dst))[0]
    if expected is None:
        centres = (np.arange(dst) + 0.5) * src / dst - 0.5
        assert np.all(np.abs(got - centres) <= 0.5 + 1e-9), 'a pixel further than half a pixel away'
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('camera, student', [((480, 640), (240, 320)), ((360, 640), (180, 320)),
                                             ((720, 1280), (240, 320)), ((480, 848), (240, 424)),
                                             ((480, 848), (181, 320)), ((360, 640), (240, 320))])
def test_any_camera_and_student_grid_fuse(camera, student):
    rng = np.random.default_rng(0)
    mm = rng.integers(0, 3000, camera).astype(np.uint16)
    conf = rng.integers(0, 256, camera).astype(np.uint8)
    res = fuse(rng.uniform(0.5, 3, student).astype(np.float32), mm, '16UC1', conf,
               FusionConfig(range_max=4.0, confidence_threshold=50, **NO_GATE))
    assert res.depth.shape == student
    expected = tof_valid(resample_nearest(mm, student), '16UC1', 0.1, 4.0, resample_nearest(conf, student),
                         50)
    assert np.array_equal(res.source == SOURCE_TOF, expected)


def test_tof_on_a_decimated_grid_back_projects_to_the_same_points():
    """A ToF pixel published on the student grid (half size) is the full-size pixel 2i + 1; with K scaled by
    scale_intrinsics for that grid it back-projects to the same 3-D point (within 1e-6 m)."""
    rng = np.random.default_rng(1)
    mm = rng.integers(200, 3900, (480, 640)).astype(np.uint16)
    res = fuse(np.full((240, 320), 9.0, np.float32), mm, '16UC1',
               config=FusionConfig(range_max=4.0, **NO_GATE))
    full = Intrinsics(500.0, 505.0, 322.5, 241.25)
    half = scale_intrinsics(full, (640, 480), (320, 240))
    v, u = np.mgrid[:240, :320]
    z = res.depth.astype(np.float64)
    x_half = (u - half.cx) * z / half.fx
    y_half = (v - half.cy) * z / half.fy
    z_full = (mm[2 * v + 1, 2 * u + 1] / F32(1000)).astype(np.float64)  # the pixel the ToF came from
    x_full = (2 * u + 1 - full.cx) * z_full / full.fx
    y_full = (2 * v + 1 - full.cy) * z_full / full.fy
    assert np.all(res.source == SOURCE_TOF)
    assert np.abs(np.stack([x_half - x_full, y_half - y_full, z - z_full])).max() < 1e-6


def test_smaller_tof_is_repeated_and_output_grid_tof():
    tof = f32([[1.0, NAN], [2.0, 3.0]]).reshape(2, 2)
    student = np.full((4, 4), 7.0, np.float32)
    res = fuse(student, tof, config=FusionConfig(range_max=10.0, **NO_GATE))
    np.testing.assert_array_equal(res.depth, [[1, 1, 7, 7], [1, 1, 7, 7], [2, 2, 3, 3], [2, 2, 3, 3]])
    np.testing.assert_array_equal(res.source, [[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1]])
    student = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    res = fuse(student, tof, config=FusionConfig(range_max=10.0, output_grid='tof', **NO_GATE))
    np.testing.assert_array_equal(res.depth, [[1.0, student[1, 3]], [2.0, 3.0]])


# ------------------------------------------------------------------------------- one-sided frames

def test_student_only_and_tof_only():
    student = f32([1.0, NAN, 0.0])
    res = fuse(student, None)
    check_table(res.depth, [1.0, NAN, NAN], ['valid', 'NaN', '0.0'], 'student-only')
    check_table(res.source, [2, 0, 0], ['valid', 'NaN', '0.0'], 'student-only source')
    assert res.accuracy is None and res.verdict.fill and not res.verdict.judged
    mm = np.array([[1000, 0], [2000, 3000]], np.uint16)
    res = fuse(None, mm, '16UC1')
    np.testing.assert_array_equal(res.source, [[1, 0], [1, 1]])
    assert np.isnan(res.depth[0, 1]) and res.depth[1, 0] == F32(2000) / F32(1000)
    res = fuse(None, mm, '16UC1', shape=(1, 1))  # onto a coarser (the last student) grid
    assert res.depth.shape == (1, 1) and res.source[0, 0] == SOURCE_TOF


def test_input_errors():
    with pytest.raises(ValueError, match='nothing to fuse'):
        fuse(None, None)
    with pytest.raises(ValueError, match='student depth must be 2-D float32'):
        fuse(np.ones((2, 2), np.float64))
    for kwargs, message in (({'range_min': 5.0, 'range_max': 1.0}, 'smaller than range_max'),
                            ({'range_min': 2.0, 'range_max': 2.0}, 'smaller than range_max'),
                            ({'range_min': -0.1}, 'range_min'), ({'mode': 'magic'}, 'mode must be one of'),
                            ({'trust_when_blind': 'maybe'}, 'trust_when_blind must be one of'),
                            ({'accuracy_smoothing': 1.0}, 'accuracy_smoothing'),
                            ({'local_min_ring': 0}, 'local_min_ring')):
        with pytest.raises(ValueError, match=message):
            FusionConfig(**kwargs)
    FusionConfig(range_min=0.0, range_max=np.nextafter(0.0, 1.0))  # just inside: accepted


def test_fuser_reuses_buffers_and_follows_shape_changes():
    fuser = Fuser(FusionConfig(range_max=10.0, **NO_GATE))
    a = fuser.fuse(np.ones((4, 4), np.float32), np.full((4, 4), 2.0, np.float32))
    assert a.depth.shape == (4, 4) and np.all(a.depth == 2.0)
    b = fuser.fuse(np.ones((6, 8), np.float32), None)
    assert b.depth.shape == (6, 8) and np.all(b.depth == 1.0)
    c = fuser.fuse(np.ones((6, 8), np.float32), np.full((6, 8), 2.0, np.float32))
    assert c.depth is b.depth, 'expected the output array to be reused for the same shape'
    assert np.all(c.depth == 2.0)


# ------------------------------------------------------------------------ settings: defaults and bounds

def test_defaults_are_the_documented_ones():
    """The defaults doc/parameters.md documents for the node (written out here, not read from the code)."""
    expected = dict(mode='local', range_min=0.1, range_max=4.0, confidence_threshold=50.0, alpha=1.0,
                    beta=0.0, median_min_pixels=100, fit_sample_size=8192, online_smoothing=0.8,
                    online_min_inliers=200, online_outlier_threshold=0.15, online_min_spread=0.2,
                    local_min_ring=20, output_grid='student', min_student_delta1=0.75, trust_hysteresis=0.05,
                    trust_min_overlap=0.05, trust_when_blind='last', accuracy_smoothing=0.7,
                    ground_tolerance=0.25, ground_contact=False)
    got = vars(FusionConfig())
    assert got == expected, {k: (got[k], v) for k, v in expected.items() if got.get(k) != v}


@pytest.mark.parametrize('kwargs, problem', [
    ({'alpha': 0.01}, None), ({'alpha': 100.0}, None), ({'alpha': 0.0099}, 'alpha must be within'),
    ({'alpha': 100.01}, 'alpha must be within'),
    ({'beta': -100.0}, None), ({'beta': 100.0}, None), ({'beta': -100.01}, 'beta must be within'),
    ({'beta': 100.01}, 'beta must be within'),
    ({'online_smoothing': 0.0, 'accuracy_smoothing': 0.0}, None),
    ({'online_smoothing': 0.999, 'accuracy_smoothing': 0.999}, None),
    ({'online_smoothing': 1.0}, 'online_smoothing'), ({'online_smoothing': -0.01}, 'online_smoothing'),
    ({'accuracy_smoothing': -0.01}, 'accuracy_smoothing'),
    ({'ground_tolerance': 0.0}, None), ({'ground_tolerance': 0.999}, None),
    ({'ground_tolerance': -0.01}, 'ground_tolerance'),
    ({'online_outlier_threshold': 1e-9}, None),
    ({'online_outlier_threshold': 0.0}, 'online_outlier_threshold'),
    ({'fit_sample_size': 0, 'median_min_pixels': 1, 'online_min_inliers': 2, 'local_min_ring': 1}, None),
    ({'fit_sample_size': -1}, 'fit_sample_size must be >= 0'),
    ({'median_min_pixels': 0}, 'median_min_pixels'),
    ({'online_min_inliers': 1}, 'online_min_inliers'), ({'local_min_ring': 0}, 'local_min_ring'),
    ({'output_grid': 'tof'}, None), ({'output_grid': 'camera'}, 'output_grid must be one of'),
])
def test_settings_accepted_at_and_refused_beyond_their_bounds(kwargs, problem):
    if problem is None:
        FusionConfig(**kwargs)
    else:
        with pytest.raises(ValueError, match=problem):
            FusionConfig(**kwargs)


# ----------------------------------------------------------------------- ToF bounds and the corrections

def test_millimetre_bounds_beyond_the_largest_reading():
    """range_max above 65.535 m: every millimetre value but 0 is a reading; a range above it: none."""
    mm = np.array([[65535, 65534, 1, 0]], np.uint16)
    check_table(tof_valid(mm, '16UC1', 0.0, 100.0), [True, True, True, False],
                ['65535 mm', '65534 mm', '1 mm', '0 mm'], 'range_max 100 m')
    assert not tof_valid(mm, '16UC1', 70.0, 100.0).any(), 'range 70-100 m: no millimetre reading passes'


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_median_scale_of_a_millimetre_tof_is_taken_in_metres(encoding):
    student = np.full((10, 10), 2.0, np.float32)
    tof = np.full((10, 10), 2500, np.uint16) if encoding == '16UC1' else np.full((10, 10), 2.5, np.float32)
    cfg = FusionConfig(mode='median', fit_sample_size=0, median_min_pixels=10, **NO_GATE)
    c = fuse(student, tof, encoding, config=cfg).correction
    assert (c.status, c.alpha, c.beta, c.pixels) == ('median', 1.25, 0.0, 100), c  # 2.5 m / 2.0 m


@pytest.mark.parametrize('student_m, tof_m, scale', [(100.0, 1.0, 0.01), (0.5, 50.0, 100.0),
                                                    (200.0, 1.0, None), (0.25, 50.0, None)])
def test_median_scale_exactly_at_the_ends_of_the_alpha_range_is_used(student_m, tof_m, scale):
    """Scales of exactly 0.01 and 100 (1 / 100, 50 / 0.5) are used; 0.005 and 200 are not."""
    student = np.full((4, 4), student_m, np.float32)
    tof = np.full((4, 4), tof_m, np.float32)
    tof[:, 2:] = np.nan
    cfg = FusionConfig(mode='median', range_max=60.0, fit_sample_size=0, median_min_pixels=8, **NO_GATE)
    res = fuse(student, tof, config=cfg)
    if scale is None:
        c = res.correction
        assert (c.status, c.alpha, c.pixels) == ('none', 1.0, 8) and 'unusable scale' in c.detail, c
        assert np.all(res.depth[:, 2:] == F32(student_m))
    else:
        assert (res.correction.status, res.correction.alpha) == ('median', scale), res.correction
        assert np.all(res.depth[:, 2:] == F32(student_m) * F32(scale))


def test_the_fits_take_the_student_readings_from_the_smallest_to_the_largest_float32():
    student = f32([POS_MIN, 2.0, FLT_MAX, 0.0, -0.0, -1.0, INF, -INF, NAN])
    tof = np.ones_like(student)
    cfg = FusionConfig(mode='median', fit_sample_size=0, median_min_pixels=3, **NO_GATE)
    c = fuse(student, tof, config=cfg).correction
    assert (c.status, c.pixels, c.alpha) == ('median', 3, 0.5), c  # median 1.0 / median 2.0


@pytest.mark.parametrize('mode', ['gated', 'affine', 'median', 'online_affine'])
def test_a_correction_without_a_tof_looks_at_no_pixels(mode):
    res = fuse(np.full((4, 4), 2.0, np.float32), None, config=FusionConfig(mode=mode, **NO_GATE))
    assert res.correction.pixels == 0, res.correction
    tof_only = fuse(None, np.full((4, 4), 2.0, np.float32), config=FusionConfig(mode=mode, **NO_GATE))
    c = tof_only.correction
    assert (c.alpha, c.beta, c.status, c.pixels) == (1.0, 0.0, 'none', 0), c


# ------------------------------------------------------------------------------- the accuracy's rows

@BOTH
def test_the_accuracy_looks_at_evenly_spaced_rows(compiled):
    """80 pixels and fit_sample_size 20: every 4th row from row 2 (rows 2 and 6 of 10), 16 pixels, all
    overlapping; the student disagrees on every other row, which the figures must not see."""
    tof = np.full((10, 8), 2.0, np.float32)
    student = np.full((10, 8), 9.0, np.float32)
    student[[2, 6]] = 2.0
    cfg = FusionConfig(mode='gated', fit_sample_size=20, ground_tolerance=0.0, **NO_GATE)
    acc = Fuser(cfg, compiled=compiled).fuse(student, tof).accuracy
    assert (acc.pixels, acc.overlap, acc.delta1, acc.absrel) == (16, 1.0, 1.0, 0.0), acc
    # a 10 x 3 grid with fit_sample_size 10: every 3rd row from row 1 (1, 4, 7), the ToF on rows 1 and 4
    tof = np.full((10, 3), NAN, np.float32)
    tof[[1, 4]] = 2.0
    acc = Fuser(cfg.__class__(**{**vars(cfg), 'fit_sample_size': 10}), compiled=compiled).fuse(
        np.full((10, 3), 2.0, np.float32), tof).accuracy
    assert (acc.pixels, acc.overlap) == (6, pytest.approx(6 / 9)), acc
    # more samples than pixels, or 0 (all): every row; fewer samples than rows: one row (the middle, 1 of 2)
    for shape, n, pixels in (((4, 3), 8192, 12), ((2, 10), 1, 10), ((3, 4), 0, 12)):
        acc = Fuser(cfg.__class__(**{**vars(cfg), 'fit_sample_size': n}), compiled=compiled).fuse(
            np.full(shape, 2.0, np.float32), np.full(shape, 2.0, np.float32)).accuracy
        assert (acc.pixels, acc.overlap) == (pixels, 1.0), (shape, n, acc)


def test_cached_index_maps_cannot_be_written():
    """The nearest-neighbour maps are shared by every frame of a size (cached): read-only."""
    rows = _index_map(6, 3)
    with pytest.raises(ValueError, match='read-only'):
        rows[0] = 5
    np.testing.assert_array_equal(_index_map(6, 3), [1, 3, 5])


# -------------------------------------------------------------------- local alignment at its bounds

@pytest.mark.parametrize('alpha, student_m, tof_m, scale', [(0.02, 100.0, 1.0, 0.5), (50.0, 0.04, 4.0, 2.0),
                                                           (0.02, 100.0, 0.5, None), (50.0, 0.04, 8.0, None)])
def test_local_scale_times_alpha_exactly_at_the_alpha_range_ends_is_applied(alpha, student_m, tof_m, scale):
    """A 3 x 3 frame, the centre a hole; the fit fails (too few pixels), so the correction is the
    calibration: the student corrected is 2.0 m (float32(student) * float32(alpha) rounds to 2.0), its
    border's ToF / student ratio is 0.5 or 2: scale * alpha is 0.01 or 100, the ends of ALPHA_RANGE,
    applied; 0.25 or 4 (0.005, 200): not applied, the hole keeps the frame's correction."""
    student = np.full((3, 3), student_m, np.float32)
    assert F32(student_m) * F32(alpha) == F32(2.0)
    tof = np.full((3, 3), tof_m, np.float32)
    tof[1, 1] = np.nan
    cfg = FusionConfig(mode='local', alpha=alpha, range_max=10.0, online_smoothing=0.0, local_min_ring=1,
                       ground_tolerance=0.0, **NO_GATE)
    res = fuse(student, tof, config=cfg)
    assert res.correction.status == 'fallback' and res.correction.alpha == alpha, res.correction
    assert (res.correction.holes, res.correction.holes_scaled) == (1, int(scale is not None)), res.correction
    assert res.depth[1, 1] == F32(2.0 * (scale or 1.0)) and res.source[1, 1] == SOURCE_STUDENT


def test_hole_scale_ratios_use_the_corrected_student_depth():
    """hole_scales divides the ToF by d * alpha + beta: 3.0 / (1.0 * 2 + 0.5) on the ring of the centre."""
    source = np.full((3, 3), SOURCE_TOF, np.uint8)
    source[1, 1] = SOURCE_STUDENT
    out = np.full((3, 3), 3.0, np.float32)
    student = np.ones((3, 3), np.float32)
    labels = np.zeros((3, 3), np.int32)
    maps = _index_map(3, 3), _index_map(3, 3)
    scales = kernel.hole_scales(out, source, student, *maps, F32(2.0), F32(0.5), labels, 4)
    assert scales[1] == F32(3.0) / F32(2.5), scales


def test_a_border_pixel_touching_a_hole_several_times_counts_once():
    """A valid ToF pixel in the middle of a 3 x 3 hole touches it 4 times (up, left, right, down): one
    border pixel, so local_min_ring 2 leaves the hole unscaled (NaN) and 1 scales it by that pixel."""
    source = np.full((3, 3), SOURCE_STUDENT, np.uint8)
    source[1, 1] = SOURCE_TOF
    out = np.full((3, 3), 2.0, np.float32)
    out[1, 1] = 3.0
    student = np.full((3, 3), 1.5, np.float32)
    maps = _index_map(3, 3), _index_map(3, 3)
    for min_ring, expected in ((2, NAN), (1, 2.0)):
        labels = np.zeros((3, 3), np.int32)
        scales = kernel.hole_scales(out, source, student, *maps, F32(1.0), F32(0.0), labels, min_ring)
        assert scales.size == 2 and np.array_equal(scales[1:], [expected], equal_nan=True), (min_ring, scales)
        assert labels[1, 1] == 0 and np.all(labels[source == SOURCE_STUDENT] == 1), labels


@pytest.mark.parametrize('extreme', [FLT_MAX, POS_MIN], ids=['largest', 'smallest'])
def test_border_students_at_the_float32_extremes_are_readings(extreme):
    """A hole at (0, 1) with three border pixels, one with the student at a float32 extreme: still a
    reading, so 3 border pixels meet local_min_ring 3 and the median ratio is the others' 2.0."""
    source = np.array([[1, 2, 1], [1, 1, 1]], np.uint8)
    out = np.full((2, 3), 2.0, np.float32)
    student = np.ones((2, 3), np.float32)
    student[0, 0] = extreme
    labels = np.zeros((2, 3), np.int32)
    with np.errstate(over='ignore'):
        scales = kernel.hole_scales(out, source, student, _index_map(2, 2), _index_map(3, 3), F32(1.0),
                                    F32(0.0), labels, 3)
    np.testing.assert_array_equal(scales[1:], [2.0])


def test_scaled_hole_pixels_that_stop_being_readings_are_dropped_and_counted():
    out = f32([1.0, 3e38, 2.0, POS_MIN])
    source = np.array([[SOURCE_STUDENT, SOURCE_STUDENT, SOURCE_TOF, SOURCE_STUDENT]], np.uint8)
    labels = np.array([[1, 1, 0, 2]], np.int32)
    lost = kernel.scale_holes(out, source, labels, np.array([1.0, 2.0, 0.5], np.float32))
    # 1.0 * 2; 3e38 * 2 overflows; the ToF pixel stays; the smallest float32 * 0.5 rounds to 0
    check_table(out, f32([2.0, NAN, 2.0, NAN]), ['x2', 'overflow', 'ToF', 'underflow'], 'scaled holes')
    check_table(source, [SOURCE_STUDENT, SOURCE_NONE, SOURCE_TOF, SOURCE_NONE],
                ['x2', 'overflow', 'ToF', 'underflow'], 'source')
    assert lost == 2


def test_hole_labelling_of_a_checkerboard_stays_within_its_buffers():
    """A checkerboard has the most holes a frame can have (every other pixel, none 4-connected): each its
    own label in raster order, and every one of the 2 * 6 * 5 neighbour pairs an adjacency. Run also as
    plain Python (``py_func``), where numpy checks every index the compiled pass does not."""
    h = w = 6
    yy, xx = np.mgrid[:h, :w]
    source = np.where((yy + xx) % 2 == 0, SOURCE_TOF, SOURCE_STUDENT).astype(np.uint8)
    expected = np.zeros((h, w), np.int32)
    expected[source == SOURCE_STUDENT] = np.arange(1, h * w // 2 + 1)
    for run in (kernel._label_holes, kernel._label_holes.py_func):
        labels = np.zeros((h, w), np.int32)
        pix, lab = np.empty(2 * h * w, np.int32), np.empty(2 * h * w, np.int32)
        n, k = run(source, labels, pix, lab)
        assert (n, k) == (h * w // 2, 2 * h * (w - 1)), (run, n, k)
        np.testing.assert_array_equal(labels, expected)


# ----------------------------------------------------------------------------- the kernel's compilation

def test_the_compiled_passes_are_kept_in_numbas_on_disk_cache():
    """Compiled once, then loaded at each start: every compiled entry point has its cache index on disk."""
    for name, dispatcher in (('_fuse_loop', kernel.fuse_compiled), ('_hole_scales', kernel.hole_scales),
                             ('_scale_holes', kernel.scale_holes), ('_plane_support', kernel.plane_support),
                             ('_label_holes', kernel._label_holes)):
        path = dispatcher.stats.cache_path
        assert path is not None, f'{name}: compiled without the on-disk cache'
        assert list(Path(path).glob(f'kernel.{name}-*.nbi')), f'{name}: no cache index in {path}'


def test_without_numba_the_kernel_helpers_are_the_plain_functions(monkeypatch):
    monkeypatch.setattr(kernel, '_NUMBA_PROBLEM', 'numba cannot be imported (a test)')

    def helper(x):
        return x + 1

    assert kernel._jit(helper) is helper
    assert kernel._jit(inline='always')(helper) is helper
    assert kernel._jit(helper, ['int64(int64)'], fastmath=True) is helper


@BOTH
def test_delta1_is_strict_at_both_ends(compiled):
    """Within delta1 means d / t and t / d both below 1.25: d = 1.875, t = 1.5 (d - t = t / 4) and d = 1.25,
    t = 1.5625 (t - d = d / 4) are exactly 1.25 off, so not within (exact binary fractions); 2.4 / 2.0 is."""
    tof = f32([1.0, 1.5, 2.0, 2.0, 1.5625])
    student = f32([1.0, 1.875, 2.4, 5.0, 1.25])
    cfg = FusionConfig(mode='gated', range_max=10.0, fit_sample_size=0, ground_tolerance=0.0, **NO_GATE)
    acc = Fuser(cfg, compiled=compiled).fuse(student, tof).accuracy
    assert (acc.pixels, acc.delta1) == (5, 2 / 5), acc
    assert acc.absrel == pytest.approx((0 + 0.25 + 0.2 + 1.5 + 0.2) / 5, rel=1e-6), acc


def test_compiled_pass_reads_any_index_maps():
    """The kernel reads the pixels its index maps name, whatever they are: here columns reversed and rows
    repeated on grids of the images' own sizes (the maps are not the identity though the sizes match)."""
    rng = np.random.default_rng(5)
    student, tof, conf = random_inputs(rng, np.float32, np.uint8, (6, 7), (6, 7))
    lo, hi, tscale, cthr = _tof_rule(tof, '32FC1', conf, FusionConfig(range_min=0.1, range_max=4.0,
                                                                      confidence_threshold=50.0))
    rows = np.array([0, 0, 2, 3, 5, 5], np.int64)
    cols = np.arange(7, dtype=np.int64)[::-1].copy()
    outs = []
    for run in (kernel.fuse_compiled, kernel.fuse_reference):
        out, src = np.empty((6, 7), np.float32), np.empty((6, 7), np.uint8)
        counts = run(student, rows, cols, tof, rows, cols, conf, cthr, lo, hi, tscale, F32(1.0), F32(0.0), 1,
                     out, src)
        outs.append((out, src, counts[:4]))
    assert np.array_equal(outs[0][0].view(np.uint32), outs[1][0].view(np.uint32))
    assert np.array_equal(outs[0][1], outs[1][1]) and outs[0][2] == outs[1][2]
    expected = np.where(tof_valid(tof, '32FC1', 0.1, 4.0, conf, 50.0), SOURCE_TOF, SOURCE_NONE)
    student_ok = np.isfinite(student) & (student > 0)
    expected = np.where(expected == SOURCE_NONE, np.where(student_ok, SOURCE_STUDENT, SOURCE_NONE), expected)
    np.testing.assert_array_equal(outs[0][1], expected[np.ix_(rows, cols)])
