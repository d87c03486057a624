"""rc_perception.depth: REP 118 conversion and the one definition of "a reading", on hand-written values.

Expectations are written out: float32 metres, NaN where there is no reading, bounds inclusive on both
sides and compared in float32 (the issue-17 bug "a depth exactly at range_max dropped" must fail here).
"""

import numpy as np
import pytest

from rc_perception.depth import DEPTH_ENCODINGS, MM_ENCODINGS, MM_PER_M, metre_bounds, to_metres

NAN = np.nan
F32 = np.float32
SMALLEST = np.nextafter(F32(0), F32(1))  # 1.4e-45, the smallest positive float32
LARGEST = np.finfo(np.float32).max


def assert_same(got: np.ndarray, expected, what: str = '') -> None:
    expected = np.asarray(expected, dtype=np.float32)
    assert got.dtype == np.float32, f'{what}: expected float32, got {got.dtype}'
    np.testing.assert_array_equal(got, expected, err_msg=what)  # NaN == NaN here, values bit-exact


def test_encodings():
    assert MM_ENCODINGS == {'16UC1', 'mono16'}
    assert DEPTH_ENCODINGS == {'16UC1', 'mono16', '32FC1'}
    assert MM_PER_M == F32(1000) and isinstance(MM_PER_M, np.float32)


def assert_metres(got: np.ndarray, expected_m, what: str = '') -> None:
    """float32, NaN exactly where expected, elsewhere within one float32 step of the float32 nearest to
    the exact metres (the millimetre conversion may round once more)."""
    expected = np.asarray(expected_m, dtype=np.float32)
    assert got.dtype == np.float32, f'{what}: expected float32, got {got.dtype}'
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f'{what}: NaN positions')
    ok = ~np.isnan(expected)
    ulp = np.spacing(np.abs(expected[ok])).astype(np.float64)
    err = np.abs(got[ok].astype(np.float64) - expected[ok])
    assert np.all(err <= ulp), f'{what}: expected {expected}, got {got}'


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16'])
def test_millimetres_become_float32_metres_and_zero_is_invalid(encoding):
    mm = np.array([[0, 1, 999], [1000, 4000, 65535]], np.uint16)
    assert_metres(to_metres(mm, encoding), [[NAN, 0.001, 0.999], [1.0, 4.0, 65.535]], encoding)
    assert to_metres(mm, encoding)[1, 1] == F32(4.0), 'whole metres are exact'


def test_float_non_readings_become_nan():
    z = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, NAN, 2.5, SMALLEST, LARGEST], np.float32)
    assert_same(to_metres(z, '32FC1'), [NAN, NAN, NAN, NAN, NAN, NAN, 2.5, SMALLEST, LARGEST])


@pytest.mark.parametrize('lo, hi', [(0.5, 2.0), (0.1, 4.0), (0.05, 10.0)])
def test_metre_bounds_are_inclusive_at_just_inside_and_just_outside(lo, hi):
    lo32, hi32 = F32(lo), F32(hi)
    z = np.array([np.nextafter(lo32, F32(0)), lo32, np.nextafter(lo32, F32(9)),
                  np.nextafter(hi32, F32(0)), hi32, np.nextafter(hi32, F32(99))], np.float32)
    expected = [NAN, lo32, z[2], z[3], hi32, NAN]
    assert_same(to_metres(z, '32FC1', range_min=lo, range_max=hi), expected, f'[{lo}, {hi}]')


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16'])
def test_millimetre_bounds_are_inclusive(encoding):
    mm = np.array([499, 500, 501, 1999, 2000, 2001], np.uint16)
    got = to_metres(mm, encoding, range_min=0.5, range_max=2.0)
    assert_metres(got, [NAN, 0.5, 0.501, 1.999, 2.0, NAN], encoding)
    assert (got[1], got[4]) == (F32(0.5), F32(2.0))


def test_bounds_compare_in_float32_not_float64():
    # float32(0.3) is 0.30000001 > 0.3 in float64: compared in float64 a depth of exactly 0.3 m would drop.
    z = np.array([0.3, 0.7], np.float32)
    assert_same(to_metres(z, '32FC1', range_min=0.3, range_max=0.7), [F32(0.3), F32(0.7)])


def test_a_reading_of_exactly_range_max_millimetres_is_kept():
    """float32(mm) / 1000 is the float32 nearest mm / 1000, the same number as float32(mm / 1000.0): a
    range bound of a whole number of millimetres keeps a reading of exactly that many (700 mm at 0.7 m)."""
    mm = np.array([300, 700, 1100], np.uint16)
    for value in mm:
        bound = float(value) / 1000.0
        got = to_metres(np.array([value], np.uint16), '16UC1', range_min=bound, range_max=bound)
        assert not np.isnan(got[0]), f'{value} mm with range [{bound}, {bound}] m: expected kept, got NaN'


def test_zero_range_min_still_rejects_zero_and_infinite_range_max_rejects_inf():
    z = np.array([0.0, SMALLEST, LARGEST, np.inf], np.float32)
    assert_same(to_metres(z, '32FC1', range_min=0.0, range_max=np.inf), [NAN, SMALLEST, LARGEST, NAN])
    assert_same(to_metres(z, '32FC1', range_min=-5.0, range_max=np.inf), [NAN, SMALLEST, LARGEST, NAN])


def test_result_is_a_new_writable_array_and_the_input_is_untouched():
    z = np.array([0.0, 1.0, 9.0], np.float32)
    before = z.copy()
    got = to_metres(z, '32FC1', range_max=5.0)
    assert not np.shares_memory(got, z), 'to_metres must return a new array, not a view of its input'
    np.testing.assert_array_equal(z, before, err_msg='the input was modified')
    got[1] = 7.0
    assert z[1] == 1.0
    mm = np.array([0, 1000], np.uint16)
    assert not np.shares_memory(to_metres(mm, '16UC1'), mm)


def test_non_contiguous_and_2d_inputs_keep_their_shape():
    z = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # 0 2 / 4 6 / 8 10
    assert_same(to_metres(z, '32FC1', range_min=1.0, range_max=8.0), [[NAN, 2], [4, 6], [8, NAN]])


@pytest.mark.parametrize('encoding', ['rgb8', 'mono8', '8UC1', '32FC3', ''])
def test_other_encodings_are_refused_by_name(encoding):
    with pytest.raises(ValueError, match=f"must be one of 16UC1, 32FC1, mono16, got '{encoding}'"):
        to_metres(np.zeros((2, 2), np.uint8), encoding)


def test_metre_bounds_values_and_types():
    lo, hi = metre_bounds()
    assert (lo, hi) == (SMALLEST, LARGEST), (lo, hi)
    assert isinstance(lo, np.float32) and isinstance(hi, np.float32)
    assert metre_bounds(0.5, 2.0) == (F32(0.5), F32(2.0))
    assert metre_bounds(-3.0, np.inf) == (SMALLEST, LARGEST), 'negative range_min and inf clamp'
    lo, hi = metre_bounds(0.3, 0.7)
    assert (lo, hi) == (F32(0.3), F32(0.7)) and isinstance(hi, np.float32)


def test_every_millimetre_value_converts_to_the_nearest_float32_of_its_metres():
    mm = np.arange(65536, dtype=np.uint16)
    exact = (mm.astype(np.float64) / 1000.0).astype(np.float32)   # rounded once, from the exact decimal
    got = to_metres(mm, '16UC1')
    same = (got == exact) | (np.isnan(got) & (mm == 0))
    assert same.all(), f'mm values converting off the nearest float32: {np.flatnonzero(~same)[:10]}'
