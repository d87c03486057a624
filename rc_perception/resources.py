"""Finding the package's installed data files (config, launch, models) wherever it was installed."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'rc_perception'
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """``share/rc_perception``: from the ament index (colcon or apt install), else the Python prefix
    (pip install), else the source checkout (editable install, running from the repository)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):
        pass  # no ament index (AMENT_PREFIX_PATH unset) or the package is not in it
    prefix_share = Path(sys.prefix) / 'share' / PACKAGE
    if (prefix_share / 'package.xml').is_file():
        return prefix_share
    return SOURCE_ROOT


def share_file(*parts: str) -> Path:
    """Path of an installed data file, e.g. ``share_file('config', 'perception.yaml')``.

    Falls back to the source checkout for a file that the found share directory lacks.
    """
    path = share_dir().joinpath(*parts)
    if path.exists():
        return path
    return SOURCE_ROOT.joinpath(*parts)
