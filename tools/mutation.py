"""Plant small bugs one at a time in the pure core and the codecs, run the unit tests, report what survives.

    python tools/mutation.py                        # every module of DEFAULT_MODULES (make mutation)
    python tools/mutation.py --module rc_perception/depth.py --max-mutants 40
    python tools/mutation.py --module rc_perception/node_support.py:BadInput --list

A mutant is the module's source with exactly one change (an AST mutator, see ``Mutator``):

* comparison flips: ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <->
  ``not in``;
* arithmetic: ``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``/``, ``%`` -> ``//``, ``**`` -> ``*``, ``&`` <->
  ``|`` (also in ``+=`` and friends), a unary minus or ``not`` removed;
* ``and`` <-> ``or``; ``min`` <-> ``max`` (also ``minimum`` / ``maximum``, ``floor`` / ``ceil``, ``any`` /
  ``all``), and numpy's ``less`` <-> ``less_equal``, ``greater`` <-> ``greater_equal``, ``logical_and`` <->
  ``logical_or`` (vectorized code compares through them);
* a number off by one (``n`` -> ``n + 1``), ``True`` <-> ``False``;
* an ``if`` / ``while`` / conditional-expression test negated;
* a statement deleted (replaced by ``pass``): calls, ``raise``, augmented assignments and assignments to
  attributes or items (not plain name bindings, which fail with a NameError that proves nothing);
* ``return x`` -> ``return None``.

Docstrings, annotations, decorators, f-strings and the messages of ``raise`` are left alone. Mutants that
leave the syntax tree unchanged, or repeat another mutant's source, are dropped. Order is by position in
the file, so a run is deterministic; ``--max-mutants N`` keeps N evenly spread over the file.

Each mutant is written into a private copy of the working tree (tracked and untracked, non-ignored files),
and the module's unit tests run there with ``pytest -x`` (tests marked dds, packaging, gpu or slow are
deselected; ``--markers`` chooses other tiers). A failing run (or one that errors, or runs past its time
limit) kills the mutant; a passing one means it survived: a bug the unit tests cannot see. The report gives
a kill score per module and every survivor as ``file:line: change (in function)``. The tests of a module
are those test files that import it directly plus the ones ``EXTRA_TESTS`` names (the modules the module's
behaviour reaches).

Exit status: 0 when every module's unmutated tests pass (and the score reaches ``--min-score``, if given),
1 otherwise, 2 for bad arguments, 130 after Ctrl-C (the summary of what was judged is printed first).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The pure core and the codecs (issue 17), and the two support pieces whose bugs the suite once missed.
DEFAULT_MODULES = (
    'depth_fusion/fusion.py',
    'depth_fusion/kernel.py',
    'depth_fusion/pairing.py',
    'depth_fusion/calibration.py',
    'pointcloud_xyz/projection.py',
    'rc_perception/codecs.py',
    'rc_perception/camera.py',
    'rc_perception/depth.py',
    'rc_perception/params.py',
    'rc_perception/latency.py',
    'rc_perception/mount.py',
    'rc_perception/launch_args.py',
    'rc_perception/fastdds.py',
    'rc_perception/node_support.py:BadInput,RateMeter',
    'student_trt/preprocess.py',
    'student_trt/postprocess.py',
)

#: Test files run for a module besides those importing it directly: where its behaviour is observed
#: through another pure module (depth.py's validity through the fusion, camera.py's grid through the
#: projection and the codecs' CameraInfo scaling).
EXTRA_TESTS = {
    'rc_perception/depth.py': ('test_fusion.py', 'test_projection.py'),
    'rc_perception/camera.py': ('test_projection.py', 'test_codecs.py', 'test_fusion.py'),
    'depth_fusion/calibration.py': ('test_fusion.py',),
}

#: Unit tests only: the graph, packaging, GPU and slow tiers take too long to run per mutant.
MARKERS = 'not dds and not packaging and not gpu and not slow'

_COMPARE_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                 ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
                 ast.NotIn: ast.In}
#: Swaps that are the comparison's negation (``<`` -> ``<=`` is not: it only moves the boundary).
_NEGATING_SWAPS = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn)
_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr,
               ast.BitOr: ast.BitAnd}
_NAME_SWAP = {'min': 'max', 'max': 'min', 'minimum': 'maximum', 'maximum': 'minimum', 'floor': 'ceil',
              'ceil': 'floor', 'any': 'all', 'all': 'any',
              # numpy's comparison and logic functions, which vectorized code calls instead of operators
              'less': 'less_equal', 'less_equal': 'less', 'greater': 'greater_equal',
              'greater_equal': 'greater', 'logical_and': 'logical_or', 'logical_or': 'logical_and'}
_SYMBOL = {ast.Lt: '<', ast.LtE: '<=', ast.Gt: '>', ast.GtE: '>=', ast.Eq: '==', ast.NotEq: '!=',
           ast.Is: 'is', ast.IsNot: 'is not', ast.In: 'in', ast.NotIn: 'not in', ast.Add: '+', ast.Sub: '-',
           ast.Mult: '*', ast.Div: '/', ast.FloorDiv: '//', ast.Mod: '%', ast.Pow: '**', ast.BitAnd: '&',
           ast.BitOr: '|', ast.And: 'and', ast.Or: 'or'}


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C: ``outcomes`` judged so far in the module, and its partial ``report`` once known."""

    def __init__(self, outcomes: list) -> None:
        super().__init__('interrupted')
        self.outcomes = outcomes
        self.report = None


@dataclass(frozen=True)
class Mutant:
    """One change: replace bytes ``[start, end)`` of the module's source with ``text``."""

    path: str      #: module path relative to the repository
    line: int
    start: int
    end: int
    text: str
    change: str    #: what changed, e.g. "'<' -> '<='"
    scope: str     #: the enclosing function or class ('' at module level)

    def apply(self, source: bytes) -> str:
        return (source[:self.start] + self.text.encode() + source[self.end:]).decode()

    def describe(self) -> str:
        where = f' (in {self.scope})' if self.scope else ''
        return f'{self.path}:{self.line}: {self.change}{where}'


# ------------------------------------------------------------------------------------------ mutator

class Mutator(ast.NodeVisitor):
    """Collects the mutants of one module's syntax tree (see the module docstring for the operators)."""

    def __init__(self, path: str, source: bytes, scopes: tuple[str, ...] = ()) -> None:
        self.path = path
        self.source = source
        self.scopes = scopes
        self._line_starts = [0]
        for line in source.splitlines(keepends=True):
            self._line_starts.append(self._line_starts[-1] + len(line))
        self._stack: list[str] = []
        self.found: list[Mutant] = []

    # ---- where we are
    def _scope(self) -> str:
        return '.'.join(self._stack)

    def _in_scope(self) -> bool:
        if not self.scopes:
            return True
        return any(self._stack[:len(s.split('.'))] == s.split('.') for s in self.scopes)

    def _offset(self, line: int, col: int) -> int:
        return self._line_starts[line - 1] + col

    def _add(self, node: ast.AST, replacement: ast.AST | str, change: str) -> None:
        if not self._in_scope():
            return
        text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
        if isinstance(node, ast.expr):
            text = f'({text})'
        start = self._offset(node.lineno, node.col_offset)
        end = self._offset(node.end_lineno, node.end_col_offset)
        self.found.append(Mutant(self.path, node.lineno, start, end, text, change, self._scope()))

    # ---- structure: scopes and what is never mutated
    def _visit_scope(self, node) -> None:
        self._stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        if not isinstance(node, ast.ClassDef):
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                self.visit(default)
        self._stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass  # message text

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Raise(self, node: ast.Raise) -> None:
        self._add(node, 'pass', 'raise deleted')  # its message is not mutated

    def _negate(self, test: ast.expr, what: str) -> None:
        # Where flipping the comparison or removing the 'not' is already the negation, that mutant suffices.
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _NEGATING_SWAPS:
            return
        self._add(test, ast.UnaryOp(ast.Not(), test), f'{what} negated')

    def visit_If(self, node: ast.If) -> None:
        if _is_main_guard(node.test):
            return
        self._negate(node.test, 'if condition')
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test, 'while condition')
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test, 'conditional expression')
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id in ('__all__', '__slots__') for t in node.targets):
            return
        if self._stack and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
            self._add(node, 'pass', 'assignment deleted')
        self.visit(node.value)
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return  # a docstring
        if self._stack:
            self._add(node, 'pass', 'statement deleted')
        self.visit(node.value)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, 'return None', 'returns None')
            self.visit(node.value)

    # ---- operators
    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            other = _COMPARE_SWAP[type(op)]()
            ops = [*node.ops[:i], other, *node.ops[i + 1:]]
            self._add(node, ast.Compare(node.left, ops, node.comparators),
                      f"'{_SYMBOL[type(op)]}' -> '{_SYMBOL[type(other)]}'")
        self.generic_visit(node)

    def _swap_operator(self, node: ast.BinOp | ast.AugAssign, suffix: str = '') -> None:
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is not None:
            mutated = ast.BinOp(node.left, swap(), node.right) if isinstance(node, ast.BinOp) else \
                ast.AugAssign(node.target, swap(), node.value)
            self._add(node, mutated, f"'{_SYMBOL[type(node.op)]}{suffix}' -> '{_SYMBOL[swap]}{suffix}'")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._swap_operator(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._swap_operator(node, '=')
        self._add(node, 'pass', 'augmented assignment deleted')
        self.visit(node.value)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, ast.BoolOp(other, node.values),
                  f"'{_SYMBOL[type(node.op)]}' -> '{_SYMBOL[type(other)]}'")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, (ast.Not, ast.USub)):
            symbol = 'not ' if isinstance(node.op, ast.Not) else '-'
            self._add(node, node.operand, f"'{symbol}' removed")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ''
        if name in _NAME_SWAP:
            swapped = ast.Name(_NAME_SWAP[name]) if isinstance(func, ast.Name) else \
                ast.Attribute(func.value, _NAME_SWAP[name])
            self._add(node, ast.Call(swapped, node.args, node.keywords), f"'{name}' -> '{_NAME_SWAP[name]}'")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self._add(node, repr(not value), f'{value} -> {not value}')
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._add(node, repr(value + 1), f'{value!r} -> {value + 1!r}')


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == '__name__')


def _normalized(source: str) -> str | None:
    try:
        return ast.dump(ast.parse(source))
    except SyntaxError:
        return None


def mutants(path: str, scopes: tuple[str, ...] = (), root: Path = REPO) -> list[Mutant]:
    """Every distinct, syntactically valid mutant of the module at ``path`` (relative to ``root``)."""
    source = (root / path).read_bytes()
    mutator = Mutator(path, source, scopes)
    mutator.visit(ast.parse(source, path))
    seen = {_normalized(source.decode())}
    out = []
    for m in sorted(mutator.found, key=lambda m: (m.start, m.end, m.change)):
        tree = _normalized(m.apply(source))
        if tree is not None and tree not in seen:
            seen.add(tree)
            out.append(m)
    return out


def spread(items: list, limit: int | None) -> list:
    """At most ``limit`` items, evenly spaced over the list (all when ``limit`` is None or larger)."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


# ------------------------------------------------------------------------------------------- runner

def module_name(path: str) -> str:
    return path[:-3].replace('/', '.') if path.endswith('.py') else path.replace('/', '.')


def _imports_module(test: Path, module: str) -> bool:
    package, _, leaf = module.rpartition('.')
    try:
        tree = ast.parse(test.read_bytes(), str(test))
    except SyntaxError:
        return False  # pytest reports it loudly; it tests nothing here
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = {a.name for a in node.names}
            if node.module == module or (node.module == package and leaf in names):
                return True
    return False


def _deselected(test: Path) -> bool:
    """Whether the whole file is marked with a tier that ``MARKERS`` leaves out (``pytestmark = ...``)."""
    for node in ast.parse(test.read_bytes(), str(test)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == 'pytestmark'
                                                for t in node.targets):
            marks = {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute)}
            return bool(marks & {'dds', 'packaging', 'gpu', 'slow'})
    return False


def tests_for(path: str, root: Path = REPO, markers: str = MARKERS) -> list[str]:
    """The unit test files of a module: those importing it directly, plus ``EXTRA_TESTS``. Files whose
    tier ``MARKERS`` leaves out are skipped (with other ``markers``, pytest's -m alone selects)."""
    module = module_name(path)
    found = {t.name for t in sorted((root / 'test').glob('test_*.py'))
             if _imports_module(t, module) and (markers != MARKERS or not _deselected(t))}
    found.update(t for t in EXTRA_TESTS.get(path, ()) if (root / 'test' / t).is_file())
    return sorted(found)


def _tree_files() -> list[str]:
    """Tracked and untracked, non-ignored files of the working tree (what a mutant's copy needs)."""
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], cwd=REPO,
                         check=True, capture_output=True).stdout.decode()
    return sorted({f for f in out.split('\0') if f and (REPO / f).is_file()})


def make_copy(dest: Path) -> Path:
    for name in _tree_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return dest


@dataclass
class Outcome:
    mutant: Mutant
    status: str        #: killed, crashed, timeout (all three count as killed), survived, error
    seconds: float


class Runner:
    """Runs one module's tests in a private copy of the tree, with the module replaced by a mutant."""

    def __init__(self, copy: Path, path: str, tests: list[str], timeout: float = 60.0,
                 markers: str = MARKERS) -> None:
        self.copy = copy
        self.markers = markers
        self.path = path
        self.tests = [f'test/{t}' for t in tests]
        self.timeout = timeout
        self.original = (copy / path).read_bytes()  # the copy's: edits to the tree meanwhile do not count
        self._numba = b'numba' in self.original
        self._scratch = Path(tempfile.mkdtemp(prefix='numba_', dir=copy))

    def _env(self, fresh_numba: bool) -> dict:
        env = {**os.environ, 'PYTHONPATH': str(self.copy), 'PYTHONDONTWRITEBYTECODE': '1',
               'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
        # A numba kernel cached from another mutant must never be reused for this one.
        cache = tempfile.mkdtemp(dir=self._scratch) if fresh_numba else str(self._scratch)
        env['NUMBA_CACHE_DIR'] = cache
        return env

    def run(self, source: bytes, fresh_numba: bool = False) -> tuple[int | None, float, str]:
        """(pytest exit code or None on timeout, seconds, output) with ``source`` as the module."""
        (self.copy / self.path).write_bytes(source)
        cmd = [sys.executable, '-m', 'pytest', '-x', '-q', '-p', 'no:cacheprovider', '-m', self.markers,
               *self.tests]
        start = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=self.copy, env=self._env(fresh_numba), capture_output=True,
                                  text=True, timeout=self.timeout)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, output = None, ''
        finally:
            (self.copy / self.path).write_bytes(self.original)
        return code, time.monotonic() - start, output

    def baseline(self) -> tuple[bool, float, str]:
        code, seconds, output = self.run(self.original)
        return code == 0, seconds, output

    def judge(self, mutant: Mutant) -> Outcome:
        code, seconds, _ = self.run(mutant.apply(self.original).encode(), fresh_numba=self._numba)
        # 1: a test failed; 2: collection failed (the mutant breaks the import): both notice the bug. A
        # crash (killed by a signal, e.g. a compiled kernel reading out of bounds) or a pytest internal
        # error (3) ends the run as loudly. 4 and 5 (usage, no tests) say the run itself was wrong.
        if code is None:
            status = 'timeout'
        elif code < 0 or code == 3:
            status = 'crashed'
        else:
            status = {0: 'survived', 1: 'killed', 2: 'killed'}.get(code, 'error')
        return Outcome(mutant, status, seconds)


# --------------------------------------------------------------------------------------------- main

@dataclass
class ModuleReport:
    path: str
    tests: list[str]
    total: int
    killed: int
    outcomes: list[Outcome]
    baseline_seconds: float
    problem: str = ''

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0

    def survivors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ('survived', 'error')]


def parse_module(spec: str) -> tuple[str, tuple[str, ...]]:
    """'path.py' or 'path.py:Qual,Other.method' -> (path, scopes)."""
    path, _, scopes = spec.partition(':')
    if not path.endswith('.py') or not (REPO / path).is_file():
        raise UsageError(f'--module expects a .py file of this repository (optionally :Scope,...), '
                         f'got {spec!r}')
    return path, tuple(s for s in scopes.split(',') if s)


def _judge_all(runners: list[Runner], todo: list[Mutant], say) -> list[Outcome]:
    from concurrent.futures import ThreadPoolExecutor
    from queue import Queue

    free: Queue[Runner] = Queue()
    for runner in runners:
        free.put(runner)

    def one(mutant: Mutant) -> Outcome:
        runner = free.get()
        try:
            return runner.judge(mutant)
        finally:
            free.put(runner)

    outcomes: list[Outcome] = []
    pool = ThreadPoolExecutor(max_workers=len(runners))
    try:
        for i, outcome in enumerate(pool.map(one, todo), 1):
            outcomes.append(outcome)
            if outcome.status in ('survived', 'error'):
                say(f'  [{i}/{len(todo)}] {outcome.status}: {outcome.mutant.describe()}')
            elif i % 25 == 0:
                say(f'  [{i}/{len(todo)}] {_killed(outcomes)} killed so far')
    except KeyboardInterrupt:  # stop at once: mutants not started are dropped, the summary still comes
        pool.shutdown(wait=False, cancel_futures=True)
        raise Interrupted(outcomes) from None
    pool.shutdown()
    return outcomes


def _killed(outcomes: list[Outcome]) -> int:
    return sum(o.status in ('killed', 'crashed', 'timeout') for o in outcomes)


def run_module(spec: str, copies: list[Path], max_mutants: int | None, say,
               markers: str = MARKERS) -> ModuleReport:
    path, scopes = parse_module(spec)
    tests = tests_for(path, copies[0], markers)
    todo = spread(mutants(path, scopes, copies[0]), max_mutants)
    say(f'{spec}: {len(todo)} mutants, tests: {", ".join(tests) or "none"}')
    if not tests:
        return ModuleReport(path, tests, len(todo), 0, [], 0.0, 'no unit test imports this module')
    probe = Runner(copies[0], path, tests, markers=markers)
    ok, seconds, output = probe.baseline()
    if not ok:
        return ModuleReport(path, tests, len(todo), 0, [], seconds,
                            'the unmutated tests fail:\n' + output[-3000:])
    timeout = max(30.0, 5.0 * seconds + 10.0)
    runners = [Runner(c, path, tests, timeout, markers) for c in copies]
    try:
        outcomes = _judge_all(runners, todo, say)
    except Interrupted as exc:
        done = exc.outcomes
        exc.report = ModuleReport(path, tests, len(done), _killed(done), done, seconds,
                                  f'interrupted after {len(done)} of {len(todo)} mutants')
        raise
    return ModuleReport(path, tests, len(todo), _killed(outcomes), outcomes, seconds)


def _totals(reports: list[ModuleReport]) -> tuple[int, int]:
    """(mutants, killed) over the modules that judged any (not those whose tests fail or are missing)."""
    judged = [r for r in reports if r.outcomes]
    return sum(r.total for r in judged), sum(r.killed for r in judged)


def print_summary(reports: list[ModuleReport], say) -> None:
    say('\nmutation score (killed / mutants) per module:')
    for r in reports:
        note = f'  ** {r.problem.splitlines()[0]}' if r.problem else ''
        say(f'  {r.path:34s} {r.killed:4d} / {r.total:4d}  {r.score:5.1f} %  '
            f'(tests {r.baseline_seconds:.1f} s){note}')
    total, killed = _totals(reports)
    say(f'  {"all":34s} {killed:4d} / {total:4d}  {100.0 * killed / max(total, 1):5.1f} %')
    survivors = [o for r in reports for o in r.survivors()]
    if survivors:
        say(f'\nsurvivors ({len(survivors)}):')
        for o in survivors:
            say(f'  {o.mutant.describe()}' + ('  [pytest error]' if o.status == 'error' else ''))
    for r in reports:
        if r.problem:
            say(f'\n{r.path}: {r.problem}')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='tools/mutation.py', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--module', action='append', metavar='PATH[:SCOPE,...]',
                        help='module to mutate, relative to the repository, optionally limited to classes or '
                             'functions (repeatable; default: the pure core and codecs, see DEFAULT_MODULES)')
    parser.add_argument('--max-mutants', type=int, default=None, metavar='N',
                        help='at most N mutants per module, evenly spread over the file (default: all)')
    parser.add_argument('--jobs', type=int, default=1, help='mutants tested in parallel (default 1)')
    parser.add_argument('--markers', default=MARKERS, metavar='EXPR',
                        help=f'pytest -m expression of the tests run per mutant (default: {MARKERS!r}; '
                             "e.g. 'not slow' to let node tests judge a node module)")
    parser.add_argument('--list', action='store_true', help='print the mutants and their tests; run nothing')
    parser.add_argument('--json', type=Path, metavar='FILE', help='also write the results as JSON')
    parser.add_argument('--min-score', type=float, default=None, metavar='PERCENT',
                        help='exit 1 when the overall score is below this')
    return parser


def _check_args(args) -> list[str]:
    if args.max_mutants is not None and args.max_mutants < 1:
        raise UsageError(f'--max-mutants must be >= 1, got {args.max_mutants}')
    if args.jobs < 1:
        raise UsageError(f'--jobs must be >= 1, got {args.jobs}')
    specs = args.module or list(DEFAULT_MODULES)
    for spec in specs:
        parse_module(spec)
    return specs


def _list(specs: list[str], max_mutants: int | None, markers: str) -> None:
    for spec in specs:
        path, scopes = parse_module(spec)
        todo = spread(mutants(path, scopes), max_mutants)
        print(f'{spec}: {len(todo)} mutants; tests: {", ".join(tests_for(path, markers=markers)) or "none"}')
        for m in todo:
            print(f'  {m.describe()}')


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        specs = _check_args(args)
    except UsageError as exc:
        print(f'mutation: {exc}', file=sys.stderr)
        return 2
    if args.list:
        _list(specs, args.max_mutants, args.markers)
        return 0

    def say(text: str) -> None:
        print(text, flush=True)

    with tempfile.TemporaryDirectory(prefix='rc_mutation_') as scratch:
        copies = [make_copy(Path(scratch) / f'tree{i}') for i in range(args.jobs)]
        started = time.monotonic()
        reports, interrupted = [], False
        try:
            for spec in specs:
                reports.append(run_module(spec, copies, args.max_mutants, say, args.markers))
        except Interrupted as exc:
            reports.append(exc.report)
            interrupted = True
    print_summary(reports, say)
    total, killed = _totals(reports)
    score = 100.0 * killed / max(total, 1)
    say(f'\n{total} mutants in {time.monotonic() - started:.0f} s')
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), 'score': r.score} for r in reports], indent=1))
    if interrupted:
        return 130
    failed = any(r.problem for r in reports) or (args.min_score is not None and score < args.min_score)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
