"""Launch-argument handling shared by the launch files (pure: no launch import, tested here).

Launch arguments are strings. An empty one means "keep what the params file says"; a non-empty one
overrides that parameter, converted to the parameter's type.
"""

from __future__ import annotations

__all__ = ['parameter_overrides', 'to_bool']

_TRUE = {'true', '1', 'yes', 'on'}
_FALSE = {'false', '0', 'no', 'off'}


def to_bool(text: str) -> bool:
    """'true'/'false' (and 1/0, yes/no, on/off), case-insensitive.

    Raises:
        ValueError: anything else, naming the value.
    """
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def parameter_overrides(values: dict[str, str], types: dict[str, type]) -> dict:
    """Parameters to set from launch-argument strings: empty strings are skipped (params file wins).

    Args:
        values: parameter name -> launch argument string.
        types: parameter name -> bool, int, float or str.

    Raises:
        ValueError: a value that does not convert, naming the parameter.
    """
    out = {}
    for name, text in values.items():
        if text == '':
            continue
        kind = types.get(name, str)
        try:
            out[name] = to_bool(text) if kind is bool else kind(text)
        except ValueError as exc:
            raise ValueError(f'launch argument for parameter {name}: {exc}') from exc
    return out
