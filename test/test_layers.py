"""The package's layers point one way: support <- stages <- offline tools (see doc/architecture.md).

Walks every import statement of the package (module level and inside functions) and fails on an arrow that
points up or sideways between stages, and checks by importing them that the node modules pull in neither
torch, matplotlib, PIL, the simulator nor any offline tool (what the car installs is what the nodes need).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SUPPORT = 'rc_perception'
STAGES = ('student_trt', 'depth_fusion', 'pointcloud_xyz')
TOOLS = 'rc_offline'
PACKAGES = (SUPPORT, *STAGES, TOOLS)
NODE_MODULES = ('student_trt.node', 'depth_fusion.node', 'pointcloud_xyz.node')
#: Heavy or offline-only libraries no node module may import, directly or through the package.
NODE_FORBIDDEN = ('torch', 'matplotlib', 'PIL', 'rosbags', 'onnx', 'modelopt', TOOLS)
#: The only runtime modules allowed to import tensorrt (lazily).
TENSORRT_MODULES = ('student_trt.backends.tensorrt_backend', 'student_trt.trt_build')
NODE_MAX_LINES = 250


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob('*.py'))}


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f'{base}.{alias.name}') for alias in node.names]
    return found


def _layer(module: str) -> str | None:
    top = module.split('.')[0]
    if top == SUPPORT:
        return 'support'
    if top in STAGES:
        return top
    if top == TOOLS:
        return 'tools'
    return None


def _violation(importer: str, imported: str) -> str | None:
    src, dst = _layer(importer), _layer(imported)
    if dst is None or src == dst or src == 'tools':
        return None
    if src == 'support':
        return f'the support layer imports {dst}'
    if dst == 'tools':
        return 'a stage imports an offline tool'
    if dst != 'support':
        return f'stage {src} imports stage {dst}'
    return None


def test_every_package_is_walked():
    modules = _sources()
    for pkg in PACKAGES:
        assert pkg in modules, f'expected package {pkg} under {REPO}, found {sorted(modules)[:5]}...'
    assert len(modules) > 30, f'expected the whole package, walked {len(modules)} modules'


def test_no_import_points_up_or_between_stages():
    problems = []
    for module, path in _sources().items():
        for line, imported in _imports(path, module):
            why = _violation(module, imported)
            if why:
                problems.append(f'{path.relative_to(REPO)}:{line}: {module} imports {imported} ({why})')
    assert not problems, 'imports that point the wrong way:\n' + '\n'.join(sorted(set(problems)))


def test_tensorrt_is_imported_only_by_the_tensorrt_backend_and_engine_build():
    problems = []
    for module, path in _sources().items():
        if _layer(module) == 'tools' or module in TENSORRT_MODULES:
            continue
        problems += [f'{path.relative_to(REPO)}:{line}' for line, name in _imports(path, module)
                     if name.split('.')[0] == 'tensorrt']
    assert not problems, f'runtime modules importing tensorrt: {problems}'


def test_launch_files_import_only_the_support_layer():
    problems = []
    for path in sorted((REPO / 'launch').glob('*.py')):
        for line, name in _imports(path, path.stem):
            layer = _layer(name)
            if layer not in (None, 'support'):
                problems.append(f'{path.relative_to(REPO)}:{line}: imports {name} ({layer})')
    assert not problems, '\n'.join(problems)


def test_the_walker_sees_an_upward_import(tmp_path):
    """The check itself can fail: a support module importing a tool or a stage is flagged."""
    assert _violation('rc_perception.codecs', 'rc_offline.scenes')
    assert _violation('rc_perception.codecs', 'depth_fusion.fusion')
    assert _violation('depth_fusion.node', 'pointcloud_xyz.projection')
    assert _violation('student_trt.node', 'rc_offline.export')
    assert _violation('rc_offline.demo', 'depth_fusion.fusion') is None
    assert _violation('depth_fusion.node', 'rc_perception.codecs') is None
    bad = tmp_path / 'mod.py'
    bad.write_text('def f():\n    from rc_offline import scenes\n'
                   'from ..pointcloud_xyz import projection\n')
    found = _imports(bad, 'depth_fusion.mod')
    assert (2, 'rc_offline.scenes') in found, found  # an import inside a function
    assert (3, 'pointcloud_xyz.projection') in found, found     # a relative import, resolved


@pytest.mark.parametrize('module', NODE_MODULES)
def test_node_module_imports_nothing_offline_or_heavy(module):
    probe = (f'import sys, {module}\n'
             f'bad = sorted(m for m in sys.modules if m.split(".")[0] in {NODE_FORBIDDEN!r})\n'
             'print(",".join(bad))')
    out = subprocess.run([sys.executable, '-c', probe], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f'importing {module} failed:\n{out.stderr}'
    loaded = out.stdout.strip()
    assert loaded == '', f'importing {module} loads {loaded} (nodes must not need them)'


@pytest.mark.parametrize('module', NODE_MODULES)
def test_node_modules_stay_small(module):
    path = REPO / (module.replace('.', '/') + '.py')
    lines = len(path.read_text().splitlines())
    assert lines <= NODE_MAX_LINES, (f'{path.relative_to(REPO)} has {lines} lines, expected <= '
                                     f'{NODE_MAX_LINES}: move pure logic (diagnostics text, rules) out of it')
