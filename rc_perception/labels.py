"""Semantic classes shared by the synthetic scenes, the student model and the colourised outputs."""

from __future__ import annotations

import functools

import numpy as np

#: Class id = index. The demo student is trained on these; a model's own metadata may name others.
CLASS_NAMES: tuple[str, ...] = ('floor', 'wall', 'ceiling', 'box', 'cylinder')

_BASE_PALETTE = np.array([
    [128, 64, 128],   # floor
    [70, 70, 70],     # wall
    [70, 130, 180],   # ceiling
    [220, 20, 60],    # box
    [250, 170, 30],   # cylinder
    [107, 142, 35], [152, 251, 152], [0, 0, 142], [119, 11, 32], [190, 153, 153],
], dtype=np.uint8)


@functools.lru_cache(maxsize=8)
def palette(num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) uint8 RGB colours; the last row (black) is for ids out of range. Cached:
    the returned array is read-only."""
    colours = np.zeros((num_classes + 1, 3), np.uint8)
    n = min(num_classes, len(_BASE_PALETTE))
    colours[:n] = _BASE_PALETTE[:n]
    rng = np.random.default_rng(0)
    if num_classes > n:
        colours[n:num_classes] = rng.integers(40, 256, (num_classes - n, 3), dtype=np.uint8)
    colours.flags.writeable = False  # shared by every caller through the cache
    return colours


def colourize(class_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB; ids >= num_classes are black."""
    colours = palette(num_classes)
    return colours[np.minimum(class_ids, num_classes)]
