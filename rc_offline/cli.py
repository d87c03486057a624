"""What every offline tool's command line shares: one-line errors, exit codes, lazy heavy imports.

A tool builds its parser with ``ArgumentParser`` (argparse whose usage errors are one line, exit 2) and
runs its body through ``run_tool``::

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run_tool(PROG, lambda: run(args))

Exit codes: 0 done, 1 ``ToolError`` (unusable input, a failed step), 2 ``UsageError`` (bad arguments),
130 interrupted. Errors print as ``<prog>: error: <message>`` on stderr, never as a traceback; a bug (any
other exception) still shows its traceback, as it should.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ['ArgumentParser', 'ToolError', 'UsageError', 'require', 'run_tool']


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class ToolError(Exception):
    """Unusable input or a failed step (exit code 1); the message says what and the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def run_tool(prog: str, body: Callable[[], int],
             errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body`` and turn its expected failures into one line and an exit code.

    Args:
        prog: the tool's name, as the user typed it.
        body: returns the exit code.
        errors: further exception types that mean "bad input" (exit 1) for this tool, e.g. OSError.
    """
    try:
        return body()
    except UsageError as exc:
        print(f'{prog}: error: {exc}', file=sys.stderr)
        return 2
    except (ToolError, *errors) as exc:
        print(f'{prog}: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        return 130


def require(module: str, purpose: str, install: str = 'pip install -r requirements/tools.txt') -> ModuleType:
    """Import an optional heavy module, or raise ``ToolError`` saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ToolError(f'{purpose} needs {module.split(".")[0]} ({exc}): {install}') from None
