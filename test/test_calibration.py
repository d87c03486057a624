"""depth_fusion.calibration: the alpha/beta fits on constructed data and the calibration file."""

import numpy as np
import pytest

from depth_fusion.calibration import (
    Calibration,
    CalibrationError,
    CalibrationFile,
    PixelPairs,
    least_squares,
    median_scale,
    read_calibration,
    rmse,
    robust_affine_fit,
    write_calibration,
)


def line(alpha, beta, n=5000, outliers=0.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.4, 4.0, n)
    y = alpha * x + beta + rng.normal(0, noise, n)
    bad = rng.random(n) < outliers
    y[bad] *= rng.uniform(1.5, 3.0, bad.sum())  # e.g. multipath: ToF reads far too long
    return x, y, bad


def test_least_squares_exact_and_degenerate():
    x, y, _ = line(1.3, -0.25)
    assert least_squares(x, y) == pytest.approx((1.3, -0.25), abs=1e-12)
    with pytest.raises(ValueError, match='all student depths are equal'):
        least_squares(np.full(10, 2.0), np.arange(10.0))
    with pytest.raises(ValueError, match='at least 2'):
        least_squares(np.array([1.0]), np.array([1.0]))


def test_median_scale_and_rmse():
    x = np.array([1.0, 2.0, 3.0])
    assert median_scale(x, 1.5 * x) == pytest.approx(1.5)
    assert np.isnan(median_scale(np.empty(0), np.empty(0)))
    assert rmse(x, x + 0.3) == pytest.approx(0.3)
    assert rmse(x, 2 * x + 1, alpha=2.0, beta=1.0) == 0.0
    assert np.isnan(rmse(np.empty(0), np.empty(0)))


@pytest.mark.parametrize('alpha, beta, outliers', [(1.0, 0.0, 0.0), (1.2, -0.15, 0.3), (0.8, 0.4, 0.45),
                                                   (2.5, -0.8, 0.2)])
def test_robust_fit_recovers_known_line(alpha, beta, outliers):
    x, y, bad = line(alpha, beta, outliers=outliers, noise=0.005)
    fit = robust_affine_fit(x, y, outlier_threshold=0.1, min_inliers=100, min_spread=0.2)
    assert fit.ok, fit
    assert fit.alpha == pytest.approx(alpha, abs=0.01) and fit.beta == pytest.approx(beta, abs=0.02), fit
    assert fit.inlier_share == pytest.approx(1 - bad.mean(), abs=0.02), fit
    plain = least_squares(x, y)
    if outliers:
        assert abs(plain[0] - alpha) > 10 * abs(fit.alpha - alpha), 'outliers should bias plain least squares'


def test_robust_fit_is_deterministic():
    x, y, _ = line(1.1, 0.1, outliers=0.3, noise=0.01)
    assert robust_affine_fit(x, y) == robust_affine_fit(x, y)


@pytest.mark.parametrize('case, reason', [
    ('few pixels', 'too few pixels (3 < 10)'),
    ('single depth', 'ill-conditioned'),
    ('noise', 'too few inliers'),
    ('negative scale', 'too few inliers'),  # lines with alpha <= 0 are not even hypotheses
    ('offset beyond BETA_RANGE', 'beta 150 m outside'),  # a file the node would refuse: not a fit
])
def test_robust_fit_failures(case, reason):
    rng = np.random.default_rng(0)
    if case == 'few pixels':
        x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    elif case == 'single depth':  # one wall at one distance: alpha and beta cannot be separated
        x, y = np.full(500, 2.0) + rng.normal(0, 0.01, 500), np.full(500, 2.4)
    elif case == 'noise':
        x, y = rng.uniform(0.5, 4, 500), rng.uniform(0.5, 4, 500)
    elif case == 'offset beyond BETA_RANGE':
        x = rng.uniform(0.5, 4, 500)
        y = x + 150.0
    else:
        x = rng.uniform(0.5, 4, 500)
        y = 5.0 - x
    fit = robust_affine_fit(x, y, outlier_threshold=0.02, min_inliers=10 if case == 'few pixels' else 200,
                            min_spread=0.2)
    assert not fit.ok and reason in fit.reason, fit


def test_pixel_pairs_accumulate_valid_overlap_with_a_cap():
    pairs = PixelPairs(per_frame=10, seed=1)
    student = np.array([[1.0, np.nan, 2.0, 0.0], [3.0, 4.0, -1.0, 5.0]], np.float32)
    tof = np.array([[1.1, 2.0, np.nan, 1.0], [3.3, np.inf, 1.0, 5.5]], np.float32)
    assert pairs.add(student, tof) == 3  # (1.0, 1.1), (3.0, 3.3), (5.0, 5.5)
    x, y = pairs.arrays()
    order = np.argsort(x)
    np.testing.assert_allclose(np.stack([x[order], y[order]]), [[1.0, 3.0, 5.0], [1.1, 3.3, 5.5]], rtol=1e-6)
    big = np.ones((100, 100), np.float32)
    assert pairs.add(big, big) == 10
    assert pairs.add(big, np.full_like(big, np.nan)) == 0
    assert (pairs.frames, pairs.frames_without_overlap) == (3, 1)
    assert pairs.arrays()[0].size == 13
    with pytest.raises(ValueError, match='differ in shape'):
        pairs.add(big, big[:5])


def test_calibration_file_round_trip(tmp_path):
    path = tmp_path / 'sub' / 'fusion_calibration.yaml'
    write_calibration(path, Calibration(1.0625, -0.0375, {'pairs': 12, 'rmse_before': np.float64(0.41)}))
    text = path.read_text()
    assert text.startswith('# depth_fusion calibration')
    cal = read_calibration(path)
    assert (cal.alpha, cal.beta) == (1.0625, -0.0375)
    assert cal.fit['pairs'] == 12 and cal.fit['rmse_before'] == 0.41 and 'created' in cal.fit


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    ('alpha: [1, 2\n', 'is not valid YAML (line'),
    ('- 1\n- 2\n', 'expected a mapping with alpha and beta, got list'),
    ('alpha: 1.0\n', 'missing beta'),
    ('gamma: 1\n', 'missing alpha and beta (has gamma)'),
    ('alpha: fast\nbeta: 0\n', "alpha must be a number, got 'fast'"),
    ('alpha: true\nbeta: 0\n', 'alpha must be a number, got True'),
    ('alpha: .nan\nbeta: 0\n', 'alpha must be finite'),
    ('alpha: 1.0\nbeta: .inf\n', 'beta must be finite'),
    ('alpha: -1.0\nbeta: 0\n', 'alpha -1 outside [0.01, 100]'),
    ('alpha: 1.0\nbeta: 500\n', 'beta 500 outside'),
])
def test_bad_calibration_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / 'cal.yaml'
    if content is not None:
        path.write_text(content)
    with pytest.raises(CalibrationError) as info:
        read_calibration(path)
    text = str(info.value)
    assert str(path) in text and message in text, f'expected the path and {message!r} in: {text}'


def test_hand_written_file_with_integers(tmp_path):
    path = tmp_path / 'cal.yaml'
    path.write_text('alpha: 1\nbeta: 0\n')
    assert read_calibration(path) == Calibration(1.0, 0.0, {})


def test_pixel_pairs_default_cap_and_empty_arrays():
    pairs = PixelPairs()
    x, y = pairs.arrays()
    assert (x.size, y.size) == (0, 0), 'no frame: no pairs'
    big = np.full((150, 200), 2.0, np.float32)  # 30000 valid pixels
    assert pairs.add(big, big) == 20000, 'the documented default: 20000 pixels a frame'


def test_pixel_pairs_need_both_depths_strictly_positive():
    pairs = PixelPairs(per_frame=0)
    student = np.array([[0.5, 2.0, 0.0, 2.0, 0.25]], np.float32)
    tof = np.array([[0.5, 0.0, 2.0, 0.75, -1.0]], np.float32)
    assert pairs.add(student, tof) == 2  # (0.5, 0.5) and (2.0, 0.75): a 0 or negative on either side is none
    x, y = pairs.arrays()
    np.testing.assert_array_equal(np.stack([x, y]), [[0.5, 2.0], [0.5, 0.75]])


def test_calibration_file_written_into_new_folders_with_six_decimals(tmp_path):
    path = tmp_path / 'a' / 'b' / 'cal.yaml'
    write_calibration(path, Calibration(1.25, -0.5, {'rmse_after': 0.123456789, 'frames': np.int64(7),
                                                     'source': 'bag', 'scale': np.float32(0.5)}))
    cal = read_calibration(path)
    assert (cal.alpha, cal.beta) == (1.25, -0.5)
    assert cal.fit['rmse_after'] == 0.123457 and cal.fit['scale'] == 0.5, cal.fit
    assert cal.fit['frames'] == 7 and type(cal.fit['frames']) is int and cal.fit['source'] == 'bag', cal.fit
    write_calibration(path.with_name('again.yaml'), Calibration(2.0, 0.0))  # into the folder now there
    assert read_calibration(path.with_name('again.yaml')).alpha == 2.0


# ------------------------------------------------------------------- the node's calibration_file parameter

def cal_file(tmp_path, name, alpha, beta=0.0):
    path = tmp_path / name
    path.write_text(f'alpha: {alpha}\nbeta: {beta}\n')
    return path


def test_calibration_file_checked_reading_is_the_one_adopted(tmp_path):
    path = cal_file(tmp_path, 'cal.yaml', 1.5, 0.25)
    f = CalibrationFile()
    assert f.check(f'  {path} ') is None
    path.write_text('alpha: 2.0\nbeta: 0.0\n')  # changed between the check and the adoption
    assert f.adopt(f' {path}  ') is True, 'a new file was loaded'
    assert (f.path, f.alpha_beta(1.0, 0.0)) == (str(path), (1.5, 0.25)), 'the reading that was checked'
    assert f.adopt(str(path)) is False and f.alpha_beta(1.0, 0.0) == (1.5, 0.25), 'same path: nothing new'


def test_calibration_file_unchecked_adoption_reads_now_and_raises(tmp_path):
    f = CalibrationFile()
    good = cal_file(tmp_path, 'good.yaml', 0.5, -0.125)
    assert f.adopt(str(good)) is True and f.alpha_beta(1.0, 0.0) == (0.5, -0.125)
    other = cal_file(tmp_path, 'other.yaml', 3.0)
    f.check(str(good))          # a check of another path does not stand for this one
    assert f.adopt(str(other)) is True and f.alpha_beta(1.0, 0.0) == (3.0, 0.0)
    with pytest.raises(CalibrationError, match='does not exist'):
        f.adopt(str(tmp_path / 'missing.yaml'))


def test_calibration_file_check_reports_problems_of_new_paths_only(tmp_path):
    f = CalibrationFile()
    path = cal_file(tmp_path, 'cal.yaml', 1.25)
    assert f.check('') is None and f.check('   ') is None, 'empty: no file'
    missing = tmp_path / 'missing.yaml'
    problem = f.check(str(missing))
    assert problem is not None and str(missing) in problem and 'does not exist' in problem, problem
    assert f.adopt(str(path)) is True
    path.write_text('alpha: [1\n')  # broken after it was loaded: the path in use is not read again
    assert f.check(str(path)) is None
    assert 'not valid YAML' in f.check(str(cal_file(tmp_path, 'bad.yaml', '[1')))


def test_calibration_file_empty_path_falls_back_to_the_parameters(tmp_path):
    f = CalibrationFile()
    assert f.adopt('') is False and f.calibration is None and f.alpha_beta(1.1, 0.2) == (1.1, 0.2)
    assert f.adopt(str(cal_file(tmp_path, 'cal.yaml', 0.75))) is True
    assert f.adopt('  ') is False, 'dropping the file loads nothing'
    assert (f.path, f.calibration, f.alpha_beta(1.1, 0.2)) == ('', None, (1.1, 0.2))
