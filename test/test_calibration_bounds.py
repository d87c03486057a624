"""depth_fusion.calibration at its edges: the accepted alpha/beta ranges (inclusive) in calibration files,
and the small estimators on the fewest pixels they accept. Hand-worked numbers; cases a mutation run
(tools/mutation.py) showed unguarded."""

import math

import numpy as np
import pytest

from depth_fusion.calibration import (
    ALPHA_RANGE,
    BETA_RANGE,
    CalibrationError,
    least_squares,
    median_scale,
    read_calibration,
    rmse,
    robust_affine_fit,
)


def test_documented_ranges():
    assert ALPHA_RANGE == (0.01, 100.0)
    assert BETA_RANGE == (-100.0, 100.0)


@pytest.mark.parametrize('alpha, beta, accepted', [
    (0.01, 0.0, True), (0.0100001, 0.0, True), (0.0099999, 0.0, False),
    (100.0, 0.0, True), (99.9999, 0.0, True), (100.0001, 0.0, False),
    (1.0, -100.0, True), (1.0, -99.9999, True), (1.0, -100.0001, False),
    (1.0, 100.0, True), (1.0, 99.9999, True), (1.0, 100.0001, False),
])
def test_calibration_file_ranges_are_inclusive(tmp_path, alpha, beta, accepted):
    path = tmp_path / 'cal.yaml'
    path.write_text(f'alpha: {alpha!r}\nbeta: {beta!r}\n')
    if accepted:
        cal = read_calibration(path)
        assert (cal.alpha, cal.beta) == (alpha, beta)
    else:
        with pytest.raises(CalibrationError, match='alpha .* outside|beta .* outside'):
            read_calibration(path)


def test_least_squares_on_two_pixels_and_its_refusals():
    alpha, beta = least_squares(np.array([1.0, 3.0]), np.array([2.5, 6.5]))  # y = 2x + 0.5
    assert (alpha, beta) == (pytest.approx(2.0), pytest.approx(0.5))
    alpha, beta = least_squares(np.array([2.0, 4.0, 6.0]), np.array([-1.0, -2.0, -3.0]))  # y = -x / 2
    assert (alpha, beta) == (pytest.approx(-0.5), pytest.approx(0.0, abs=1e-12))
    with pytest.raises(ValueError, match='at least 2 pixels, got 1'):
        least_squares(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match='all student depths are equal'):
        least_squares(np.array([0.5, 0.5]), np.array([1.0, 2.0]))
    tiny = least_squares(np.array([1.0, 1.1]), np.array([1.0, 1.2]))  # a spread of 0.1 m is a spread
    assert tiny == (pytest.approx(2.0), pytest.approx(-1.0))


def test_median_scale_needs_a_positive_student_median():
    assert median_scale(np.array([1.0, 2.0, 4.0]), np.array([3.0, 4.0, 8.0])) == pytest.approx(2.0)
    assert median_scale(np.array([0.5]), np.array([1.0])) == pytest.approx(2.0)
    assert math.isnan(median_scale(np.array([]), np.array([])))
    assert math.isnan(median_scale(np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0])))
    assert math.isnan(median_scale(np.array([-1.0]), np.array([1.0])))


def test_rmse_of_one_pixel_and_of_none():
    assert rmse(np.array([1.0]), np.array([3.0])) == pytest.approx(2.0)
    assert rmse(np.array([1.0, 2.0]), np.array([2.5, 4.5]), alpha=2.0, beta=0.5) == pytest.approx(0.0)
    assert rmse(np.array([1.0, 1.0]), np.array([0.0, 4.0]), alpha=1.0, beta=1.0) == pytest.approx(2.0)
    assert math.isnan(rmse(np.array([]), np.array([])))


# ------------------------------------------------------------------------------ the robust fit's edges

@pytest.mark.parametrize('x, y, alpha, beta', [
    ([2.0, 3.0], [100.0, 200.0], 100.0, -100.0),   # alpha at its upper bound, beta at its lower
    ([1.0, 2.0], [101.0, 102.0], 1.0, 100.0),      # beta at its upper bound
    ([100.0, 200.0], [1.0, 2.0], 0.01, 0.0),       # alpha at its lower bound
])
def test_a_fit_exactly_at_the_accepted_ranges_is_ok(x, y, alpha, beta):
    """Two pixels on a line whose alpha / beta are exactly a bound (exact in binary: the least squares of
    two points is the line through them): ok, as read_calibration and the node accept those values."""
    fit = robust_affine_fit(np.array(x), np.array(y))
    assert fit.ok and (fit.alpha, fit.beta) == (alpha, pytest.approx(beta, abs=1e-12)), fit
    assert (fit.inliers, fit.pixels) == (2, 2), fit


def test_a_fit_on_exactly_min_inliers_pixels_with_exactly_min_spread():
    # y = 2x on two pixels: 2 pixels = min_inliers; the student depths 1 and 2 spread (std) exactly 0.5 m.
    fit = robust_affine_fit(np.array([1.0, 2.0]), np.array([2.0, 4.0]), min_inliers=2, min_spread=0.5)
    assert fit.ok and (fit.alpha, fit.beta) == (2.0, 0.0), fit
    fit = robust_affine_fit(np.array([1.0, 2.0]), np.array([2.0, 4.0]), min_inliers=3)
    assert not fit.ok and fit.reason == 'too few pixels (2 < 3)', fit
    fit = robust_affine_fit(np.array([1.0, 2.0]), np.array([2.0, 4.0]), min_spread=0.5000001)
    assert not fit.ok and 'ill-conditioned' in fit.reason, fit


def test_no_positive_scale_among_the_hypotheses():
    """ToF depths all negative: the median ratio is -1 and every pair gives a slope of -1 (not a
    hypothesis): the fit fails at once, saying so, with NaN alpha and beta."""
    fit = robust_affine_fit(np.array([1.0, 2.0, 3.0]), np.array([-1.0, -2.0, -3.0]))
    assert not fit.ok and fit.reason == 'no positive scale among the hypotheses', fit
    assert math.isnan(fit.alpha) and math.isnan(fit.beta) and (fit.inliers, fit.pixels) == (0, 3), fit


def test_the_default_outlier_threshold_is_15_percent_of_the_tof_depth():
    """70 pixels on y = x, 20 with residuals of 13 % of their ToF depth (either side) and 10 with 20 %:
    with the default threshold (0.15) the 20 % ones are the outliers, and the fit stays near y = x."""
    x = np.linspace(0.5, 4.0, 100)
    y = x.copy()
    y[70:80] = x[70:80] / 0.8    # |x - y| = 0.2 y
    y[80:90] = x[80:90] / 0.87   # |x - y| = 0.13 y
    y[90:] = x[90:] / 1.13       # |x - y| = 0.13 y
    fit = robust_affine_fit(x, y)
    assert fit.ok and fit.inliers == 90, fit
    assert fit.alpha == pytest.approx(1.0, abs=0.01) and fit.beta == pytest.approx(0.0, abs=0.03), fit
