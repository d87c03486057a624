"""Declarative node parameters: declared with descriptors, validated when set, applied atomically.

A node lists its parameters as ``ParamSpec``s. ``NodeParams`` declares them all (description, range,
allowed values, read-only flag in the descriptor), exposes the current values as an immutable
``values`` object, and registers an on-set-parameters callback that checks every change (type, range,
choices, then the node's own cross-parameter check) before swapping in a new ``values`` object. Readers
therefore always see a consistent set, and a rejected change leaves everything as it was.

The specs are also what the packaging tests compare against config/perception.yaml, so a parameter
cannot be added to a node without being documented there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

__all__ = ['NodeParams', 'ParamSpec']


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type), meaning and constraints."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        constraints = []
        if self.choices:
            constraints.append('one of: ' + ', '.join(str(c) for c in self.choices))
        if self.read_only:
            constraints.append('read-only: set at start-up (params file or launch argument)')
        desc = ParameterDescriptor(name=self.name, description=self.description,
                                   additional_constraints='; '.join(constraints),
                                   read_only=self.read_only)
        if (self.min is not None or self.max is not None) and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(
                    from_value=int(self.min if self.min is not None else -(2 ** 31)),
                    to_value=int(self.max if self.max is not None else 2 ** 31 - 1), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.min if self.min is not None else -math.inf),
                    to_value=float(self.max if self.max is not None else math.inf), step=0.0)]
        return desc

    def check(self, value: Any) -> str | None:
        """A reason to reject ``value``, or None when it is acceptable."""
        if isinstance(self.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = list if isinstance(self.default, (list, tuple)) else type(self.default)
        if type(value) is not expected:
            among = f" (one of {', '.join(map(str, self.choices))})" if self.choices else ''
            return f'{self.name} must be {expected.__name__}{among}, got {type(value).__name__} {value!r}'
        if isinstance(value, float) and math.isnan(value):
            return f'{self.name} must be a number, got NaN'
        if self.min is not None and value < self.min:
            return f'{self.name} must be >= {self.min}, got {value!r}'
        if self.max is not None and value > self.max:
            return f'{self.name} must be <= {self.max}, got {value!r}'
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        return None


def _coerce(spec: ParamSpec, value: Any) -> Any:
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, (list, tuple)) and not isinstance(value, str):
        return list(value)
    return value


def _declare(node, spec: ParamSpec) -> tuple[Any, str | None]:
    """Declare one parameter: (its start-up value, None), or (None, why that value cannot be used)."""
    default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    try:
        return _coerce(spec, node.declare_parameter(spec.name, default, spec.descriptor()).value), None
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        # rclpy refused the start-up value (wrong type, outside the range): say why in the spec's words,
        # as a change at run time would be answered; rclpy keeps the value given only privately.
        given = getattr(node, '_parameter_overrides', {}).get(spec.name)
        if given is None:
            return None, f'{spec.name}: ' + str(exc).removesuffix(f': {spec.name}')
        value = given.value  # check() takes an integer for a float (a number); rclpy's declared type does not
        return None, spec.check(value) or f'{spec.name} must be float (write {float(value)!r}), got {value!r}'


class NodeParams:
    """Declares ``specs`` on ``node`` and keeps their validated values in ``self.values``.

    Args:
        node: the rclpy node.
        specs: the node's parameters.
        validate: cross-parameter check on a candidate (all values, as a namespace); returns a reason
            to reject, or None. Also run on the start-up values (a bad params file fails at start-up).
        on_change: called with (old, new) after a change was accepted, to rebuild derived state.

    Raises:
        ValueError: the start-up values (params file, launch arguments) are invalid.
    """

    def __init__(self, node, specs: Sequence[ParamSpec],
                 validate: Callable[[SimpleNamespace], str | None] | None = None,
                 on_change: Callable[[SimpleNamespace, SimpleNamespace], None] | None = None) -> None:
        self._node = node
        self.specs = MappingProxyType({s.name: s for s in specs})
        self._validate = validate
        self._on_change = on_change
        values, problems = {}, []
        for spec in specs:
            value, problem = _declare(node, spec)
            if problem:
                problems.append(problem)
            else:
                values[spec.name] = value
        problems += [p for p in (self.specs[n].check(v) for n, v in values.items()) if p]
        candidate = SimpleNamespace(**values)
        if not problems and validate is not None:
            reason = validate(candidate)
            if reason:
                problems.append(reason)
        if problems:
            raise ValueError('invalid parameters: ' + '; '.join(problems))
        self.values = candidate
        node.add_on_set_parameters_callback(self._on_set)

    def _on_set(self, params: Iterable[Parameter]) -> SetParametersResult:
        changes = {}
        for param in params:
            spec = self.specs.get(param.name)
            if spec is None:
                continue  # not ours (use_sim_time, qos_overrides.*)
            value = _coerce(spec, param.value)
            reason = spec.check(value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[param.name] = value
        if not changes:
            return SetParametersResult(successful=True)
        candidate = SimpleNamespace(**{**vars(self.values), **changes})
        if self._validate is not None:
            reason = self._validate(candidate)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        old, self.values = self.values, candidate
        if self._on_change is not None:
            try:
                self._on_change(old, candidate)
            except Exception as exc:  # a failed apply must not leave half a change
                self.values = old
                return SetParametersResult(successful=False, reason=str(exc))
        self._node.get_logger().info(
            'parameters changed: ' + ', '.join(f'{k}={v!r}' for k, v in changes.items()))
        return SetParametersResult(successful=True)
