"""Launch-argument conversion used by the launch files (pure)."""

import pytest

from rc_perception.launch_args import parameter_overrides, to_bool


def test_empty_arguments_keep_the_params_file_value():
    assert parameter_overrides({'model_path': '', 'backend': ''}, {}) == {}


def test_values_convert_to_the_parameter_type():
    got = parameter_overrides({'publish_source_map': 'False', 'skip': '2', 'alpha': '1.5', 'mode': 'affine'},
                              {'publish_source_map': bool, 'skip': int, 'alpha': float})
    assert got == {'publish_source_map': False, 'skip': 2, 'alpha': 1.5, 'mode': 'affine'}
    assert isinstance(got['alpha'], float)


def test_bad_values_name_the_parameter():
    with pytest.raises(ValueError, match="parameter publish_source_map: expected true or false, got 'maybe'"):
        parameter_overrides({'publish_source_map': 'maybe'}, {'publish_source_map': bool})
    with pytest.raises(ValueError, match='parameter skip'):
        parameter_overrides({'skip': 'two'}, {'skip': int})
    assert to_bool(' ON ') is True
