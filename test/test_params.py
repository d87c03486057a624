"""rc_perception.params: descriptors, checks at every bound, and NodeParams on a real rclpy node (no DDS
traffic: parameters are set through the node's own API; test_param_ranges.py goes through the services)."""

import math

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from rc_perception.params import NodeParams, ParamSpec

RATE = ParamSpec('rate', 2.5, 'Frames per second.', min=0.5, max=10.0)
SKIP = ParamSpec('skip', 1, 'Keep every skip-th pixel.', min=1, max=64)
MODE = ParamSpec('mode', 'a', 'The mode.', choices=('a', 'b'))
PATH = ParamSpec('path', '', 'A file.', read_only=True)


@pytest.fixture(scope='module')
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture
def make_node(context):
    nodes = []

    def make(overrides=()):
        node = Node('params_test', context=context, start_parameter_services=False,
                    parameter_overrides=[Parameter(k, value=v) for k, v in dict(overrides).items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


# ------------------------------------------------------------------------------------------ ParamSpec

def test_float_descriptor_range_and_text():
    d = RATE.descriptor()
    assert (d.name, d.description, d.read_only, d.additional_constraints) == ('rate', 'Frames per second.',
                                                                              False, '')
    assert len(d.floating_point_range) == 1 and not d.integer_range
    r = d.floating_point_range[0]
    assert (r.from_value, r.to_value, r.step) == (0.5, 10.0, 0.0)


def test_open_ended_ranges():
    lo = ParamSpec('x', 1.0, 'x', min=0.0).descriptor().floating_point_range[0]
    assert (lo.from_value, lo.to_value) == (0.0, math.inf)
    hi = ParamSpec('x', 1.0, 'x', max=3.0).descriptor().floating_point_range[0]
    assert (hi.from_value, hi.to_value) == (-math.inf, 3.0)
    ilo = ParamSpec('n', 1, 'n', min=0).descriptor().integer_range[0]
    assert (ilo.from_value, ilo.to_value, ilo.step) == (0, 2 ** 31 - 1, 0)
    ihi = ParamSpec('n', 1, 'n', max=9).descriptor().integer_range[0]
    assert (ihi.from_value, ihi.to_value) == (-(2 ** 31), 9)


def test_integer_descriptor_and_types_without_ranges():
    d = SKIP.descriptor()
    assert len(d.integer_range) == 1 and not d.floating_point_range
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 64)
    unbounded = ParamSpec('x', 1.0, 'x').descriptor()
    assert not unbounded.floating_point_range and not unbounded.integer_range
    flag = ParamSpec('flag', False, 'a bool with a stray bound', min=0, max=1).descriptor()
    assert not flag.integer_range and not flag.floating_point_range, 'a bool has no numeric range'
    text = ParamSpec('s', 'x', 's', min=0, max=1).descriptor()
    assert not text.integer_range and not text.floating_point_range


def test_constraint_text_for_choices_and_read_only():
    assert MODE.descriptor().additional_constraints == 'one of: a, b'
    d = PATH.descriptor()
    assert d.read_only is True
    assert d.additional_constraints == 'read-only: set at start-up (params file or launch argument)'
    both = ParamSpec('m', 'a', 'm', choices=('a', 'b'), read_only=True).descriptor()
    assert both.additional_constraints == ('one of: a, b; read-only: set at start-up (params file or launch '
                                           'argument)')


@pytest.mark.parametrize('value, reason', [
    (0.5, None), (0.50001, None), (0.49999, 'rate must be >= 0.5, got 0.49999'),
    (10.0, None), (9.9999, None), (10.0001, 'rate must be <= 10.0, got 10.0001'),
    (3, None),  # an integer for a float parameter is a number like any other
    (math.nan, 'rate must be a number, got NaN'),
    ('fast', "rate must be float, got str 'fast'"),
    (True, 'rate must be float, got bool True'),
])
def test_float_check_at_just_inside_and_just_outside_each_bound(value, reason):
    assert RATE.check(value) == reason


@pytest.mark.parametrize('value, reason', [
    (1, None), (2, None), (0, 'skip must be >= 1, got 0'), (64, None), (63, None),
    (65, 'skip must be <= 64, got 65'), (2.0, 'skip must be int, got float 2.0'),
    (False, 'skip must be int, got bool False'),
])
def test_integer_check(value, reason):
    assert SKIP.check(value) == reason


def test_choices_and_unbounded_checks():
    assert MODE.check('b') is None
    assert MODE.check('c') == "mode must be one of a, b, got 'c'"
    assert MODE.check(1) == 'mode must be str (one of a, b), got int 1'
    assert ParamSpec('x', 0.0, 'x').check(-1e300) is None
    assert ParamSpec('x', 0.0, 'x').check(math.inf) is None


# ------------------------------------------------------------------------------------------ NodeParams

def test_declares_every_spec_with_its_descriptor_and_default(make_node):
    node = make_node()
    params = NodeParams(node, (RATE, SKIP, MODE, PATH, ParamSpec('sizes', (1, 2), 'a list')))
    v = params.values
    assert (v.rate, v.skip, v.mode, v.path, v.sizes) == (2.5, 1, 'a', '', [1, 2])
    assert node.get_parameter('rate').value == 2.5
    assert node.describe_parameter('skip').integer_range[0].to_value == 64
    assert node.describe_parameter('path').read_only
    assert dict(params.specs) == {'rate': RATE, 'skip': SKIP, 'mode': MODE, 'path': PATH,
                                  'sizes': params.specs['sizes']}


def test_start_up_values_are_checked_and_every_problem_named(make_node):
    with pytest.raises(ValueError) as err:
        NodeParams(make_node({'mode': 'c', 'skip': 0}), (RATE, SKIP, MODE))
    text = str(err.value)
    assert text.startswith('invalid parameters: '), text
    assert 'skip' in text and "mode must be one of a, b, got 'c'" in text, text


def test_out_of_range_and_wrong_type_start_up_values_are_a_value_error_not_rclpy_exceptions(make_node):
    """`-p rate:=0.1` or `-p rate:=5` must end in one line (StartupError) saying what was expected and what
    came, in the words a change at run time would get, not in an rclpy traceback."""
    with pytest.raises(ValueError, match=r'^invalid parameters: rate must be >= 0\.5, got 0\.1$'):
        NodeParams(make_node({'rate': 0.1}), (RATE,))
    with pytest.raises(ValueError, match=r'^invalid parameters: rate must be float \(write 5\.0\), got 5$'):
        NodeParams(make_node({'rate': 5}), (RATE,))
    with pytest.raises(ValueError, match=r'^invalid parameters: mode must be str \(one of a, b\), got bool '):
        NodeParams(make_node({'mode': True}), (MODE,))
    with pytest.raises(ValueError, match=r'^invalid parameters: rate must be >= 0\.5, got 0\.1; skip must be '
                                         r'>= 1, got 0$'):
        NodeParams(make_node({'rate': 0.1, 'skip': 0}), (RATE, SKIP))


def test_cross_check_runs_at_start_up_only_on_individually_valid_values(make_node):
    seen = []

    def validate(p):
        seen.append(vars(p).copy())
        return 'rate must exceed skip' if p.rate <= p.skip else None

    with pytest.raises(ValueError, match='invalid parameters: rate must exceed skip'):
        NodeParams(make_node({'rate': 1.0, 'skip': 3}), (RATE, SKIP), validate=validate)
    assert seen == [{'rate': 1.0, 'skip': 3}]
    seen.clear()
    with pytest.raises(ValueError, match="mode must be one of"):
        NodeParams(make_node({'mode': 'z'}), (RATE, SKIP, MODE), validate=validate)
    assert seen == [], 'the cross-check must not see values that already failed their own check'
    assert NodeParams(make_node({'rate': 4.0, 'skip': 3}), (RATE, SKIP), validate=validate).values.rate == 4.0


def test_set_accepts_at_the_bounds_and_rejects_outside_keeping_the_old_values(make_node):
    node = make_node()
    params = NodeParams(node, (RATE, SKIP))
    first = params.values
    for value in (0.5, 10.0, 7):
        assert node.set_parameters([Parameter('rate', value=float(value))])[0].successful, value
    assert params.values.rate == 7.0 and isinstance(params.values.rate, float)
    assert first.rate == 2.5, 'a change makes a new values object; the old one stays as it was'
    result = node.set_parameters([Parameter('rate', value=10.5)])[0]
    assert not result.successful and params.values.rate == 7.0, result.reason
    result = node.set_parameters([Parameter('skip', value=65)])[0]
    assert not result.successful and params.values.skip == 1, result.reason


def test_set_checks_nan_and_choices_in_the_callback(make_node):
    node = make_node()
    params = NodeParams(node, (ParamSpec('gain', 1.0, 'unbounded gain'), MODE))
    result = node.set_parameters([Parameter('gain', value=math.nan)])[0]
    assert (result.successful, result.reason) == (False, 'gain must be a number, got NaN')
    result = node.set_parameters([Parameter('mode', value='c')])[0]
    assert (result.successful, result.reason) == (False, "mode must be one of a, b, got 'c'")
    assert (params.values.gain, params.values.mode) == (1.0, 'a')


def test_atomic_change_is_cross_checked_as_a_whole(make_node):
    node = make_node()
    params = NodeParams(node, (RATE, SKIP), validate=lambda p: 'rate <= skip' if p.rate <= p.skip else None)
    result = node.set_parameters_atomically([Parameter('skip', value=5)])
    assert (result.successful, result.reason) == (False, 'rate <= skip')
    result = node.set_parameters_atomically([Parameter('rate', value=9.0), Parameter('skip', value=5)])
    assert result.successful, result.reason
    assert (params.values.rate, params.values.skip) == (9.0, 5)
    result = node.set_parameters_atomically([Parameter('rate', value=6.0), Parameter('skip', value=99)])
    assert not result.successful and (params.values.rate, params.values.skip) == (9.0, 5), \
        'one bad value rejects the whole change'


def test_other_parameters_pass_through_and_on_change_sees_old_and_new(make_node):
    node = make_node()
    calls = []
    params = NodeParams(node, (RATE,), on_change=lambda old, new: calls.append((old.rate, new.rate)))
    assert node.set_parameters([Parameter('use_sim_time', value=True)])[0].successful
    assert calls == [], 'a parameter that is not ours changes nothing of ours'
    assert node.set_parameters([Parameter('rate', value=4.0)])[0].successful
    assert calls == [(2.5, 4.0)] and params.values.rate == 4.0


def test_a_failing_apply_rejects_the_change_and_restores_the_values(make_node):
    node = make_node()

    def apply(old, new):
        if new.rate > 5.0:
            raise RuntimeError('cannot go that fast')

    params = NodeParams(node, (RATE,), on_change=apply)
    result = node.set_parameters([Parameter('rate', value=6.0)])[0]
    assert (result.successful, result.reason) == (False, 'cannot go that fast')
    assert params.values.rate == 2.5 and node.get_parameter('rate').value == 2.5
    assert node.set_parameters([Parameter('rate', value=5.0)])[0].successful and params.values.rate == 5.0


def test_read_only_parameters_cannot_change(make_node):
    node = make_node({'path': '/data'})
    params = NodeParams(node, (PATH,))
    assert params.values.path == '/data'
    assert not node.set_parameters([Parameter('path', value='/other')])[0].successful
    assert params.values.path == '/data'


def test_an_accepted_change_is_logged_once_with_its_values(make_node, capfd):
    node = make_node()
    NodeParams(node, (RATE, SKIP))
    capfd.readouterr()
    change = [Parameter('rate', value=4.0), Parameter('skip', value=2)]
    assert node.set_parameters_atomically(change).successful
    assert not node.set_parameters([Parameter('skip', value=0)])[0].successful
    out = ''.join(capfd.readouterr())
    lines = [line for line in out.splitlines() if 'parameters changed' in line]
    assert len(lines) == 1 and lines[0].endswith('parameters changed: rate=4.0, skip=2'), out


def test_list_parameters_arrive_as_lists_whatever_sequence_rclpy_hands_over(make_node):
    import array

    node = make_node()
    params = NodeParams(node, (ParamSpec('sizes', (1, 2), 'a list'),))
    assert params.values.sizes == [1, 2] and type(params.values.sizes) is list
    assert node.set_parameters([Parameter('sizes', value=array.array('q', [3, 4]))])[0].successful
    assert params.values.sizes == [3, 4] and type(params.values.sizes) is list, params.values.sizes
