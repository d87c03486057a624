"""The built-in evaluation data: synthetic splits generated on first use and cached on disk.

The demo, the benchmark and the export's INT8 calibration use these, so a fresh machine needs no data
download. Seeds are disjoint from the demo student's training data (random frames, seed 1) and held-out
checks (seeds 1001, 2024):

* ``heldout``: a robot's drive at 15 Hz (``rc_offline.drive``), seed 35: the demo's replay and the
  benchmark's default evaluation set. A 6.9 x 5.6 m room with boxes and cylinders in view all along
  (obstacles are what the pipeline is for), the camera on the nominal mount with a real tilt error, a box
  removed mid-drive and a dark block the ToF cannot see; camera.yaml records the nominal mount and the
  events, poses.csv the robot's base pose and the camera's real pose per frame;
* ``calibration``: independent random frames, seed 4242: INT8 calibration images.

Splits live in ``$RC_PERCEPTION_CACHE`` (default ``$XDG_CACHE_HOME/rc_perception``, i.e.
``~/.cache/rc_perception``), one folder per (kind, version, seed, frames), written to a temporary folder
first and renamed when complete, so an interrupted run never leaves a half split behind. ``VERSIONS``
names each kind's generation: it changes whenever what a seed generates changes, so a stale cached split
is never reused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ['CALIBRATION_SEED', 'HELDOUT_SEED', 'cache_root', 'ensure_split']

#: The drive's room (6.9 x 5.6 m, a 3.6 m straight on its loop, 13 objects): chosen for the events' view.
HELDOUT_SEED = 35
CALIBRATION_SEED = 4242
KINDS = ('heldout', 'calibration')
#: Part of each split's folder name: bump a kind's entry when its generator's output changes.
VERSIONS = {'heldout': 'drive3', 'calibration': 'v2'}


def cache_root() -> Path:
    explicit = os.environ.get('RC_PERCEPTION_CACHE')
    if explicit:
        return Path(explicit)
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'rc_perception'


def ensure_split(kind: str, frames: int, seed: int | None = None, root: Path | None = None,
                 progress: Callable[[int, float], None] | None = None) -> Path:
    """Folder of the split (rc_offline.dataset layout), generated now if it is not cached yet.

    Args:
        kind: 'heldout' (a robot's 15 Hz drive) or 'calibration' (independent random frames).
        frames: number of frames.
        seed: split seed (default: HELDOUT_SEED or CALIBRATION_SEED).
        root: cache folder (default: cache_root()).
        progress: callable(frames_done, ms_per_frame) while generating.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    from rc_offline import drive, scenes
    seed = (HELDOUT_SEED if kind == 'heldout' else CALIBRATION_SEED) if seed is None else seed
    root = root or cache_root()
    folder = root / f'{kind}-{VERSIONS[kind]}-seed{seed}-n{frames}'
    if (folder / 'camera.yaml').is_file():
        return folder
    tmp = root / f'.{folder.name}.tmp{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {'kind': kind, 'seed': seed}
    if kind == 'heldout':
        source = drive.drive_frames(seed, frames)
        meta.update(generator='rc_offline.drive', **drive.drive(seed).meta())
    else:
        source = scenes.random_frames(seed, frames)
        meta.update(generator='rc_offline.scenes')
    scenes.write_split(tmp, source, meta=meta, progress=progress)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process (a test, a second demo) finished the same split first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / 'camera.yaml').is_file():
            raise
    return folder
