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
