"""Generate doc/parameters.md from the nodes' ParamSpec declarations, so the reference cannot drift.

    python -m rc_offline.docgen            # rewrite doc/parameters.md
    python -m rc_offline.docgen --check    # exit 1 if it is out of date (test/test_docs.py does the same)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from rc_perception.params import ParamSpec

__all__ = ['NODES', 'render', 'main']

#: (node name, module with a PARAMS tuple), in pipeline order.
NODES = (
    ('student_trt_node', 'student_trt.node'),
    ('depth_fusion_node', 'depth_fusion.node'),
    ('pointcloud_xyz_node', 'pointcloud_xyz.node'),
    ('replay_node', 'rc_offline.replay'),
)
DOC = Path(__file__).resolve().parent.parent / 'doc' / 'parameters.md'

_HEADER = """# Node parameters

Generated from the nodes' `ParamSpec` declarations by `python -m rc_offline.docgen` (`make docs`); a test
fails when this file and the code disagree. Every parameter is declared with this description and range
(`ros2 param describe` shows them), validated when set (`ros2 param set` is rejected with the reason when a
value is out of range), and listed with its default in `config/perception.yaml`. Read-only parameters are
read at start-up only (params file or launch argument).
"""


def _type_name(value) -> str:
    return {bool: 'bool', int: 'int', float: 'double', str: 'string'}.get(type(value), type(value).__name__)


def _default(value) -> str:
    if isinstance(value, bool):
        return '`true`' if value else '`false`'
    if isinstance(value, str):
        return f"`'{value}'`"
    return f'`{value!r}`'


def _limits(spec: ParamSpec) -> str:
    parts = []
    if spec.choices:
        parts.append(' / '.join(f'`{c}`' for c in spec.choices))
    if spec.min is not None or spec.max is not None:
        lo = '-inf' if spec.min is None else f'{spec.min:g}'
        hi = 'inf' if spec.max is None else f'{spec.max:g}'
        parts.append(f'[{lo}, {hi}]')
    if spec.read_only:
        parts.append('read-only')
    return ', '.join(parts)


def _escape(text: str) -> str:
    return text.replace('|', '\\|').replace('\n', ' ')


def render() -> str:
    """The whole of doc/parameters.md."""
    lines = [_HEADER]
    for node, module in NODES:
        specs = importlib.import_module(module).PARAMS
        lines += [f'## {node}', '', f'Declared in `{module.replace(".", "/")}.py`.', '',
                  '| parameter | type | default | allowed | meaning |', '|---|---|---|---|---|']
        lines += [f'| `{s.name}` | {_type_name(s.default)} | {_default(s.default)} | {_limits(s)} | '
                  f'{_escape(s.description)} |' for s in specs]
        lines.append('')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rc_offline.docgen', description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true', help='only check that doc/parameters.md is current')
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ''
        if current != text:
            print(f'{DOC} is out of date: run python -m rc_offline.docgen (make docs)', file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f'wrote {DOC}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
