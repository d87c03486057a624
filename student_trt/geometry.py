"""Which grid the student publishes for a camera, and where the camera image sits in the model input.

Pure (numpy and ``rc_perception.camera`` only); the node, the pre/post-processing and the tests share it.

**Published grid** (``output_size: model``). The camera image decimated by the whole factor ``f`` that
brings its pixel count nearest the model input's (on a log scale; the larger grid on a tie), among the
factors that divide both sides: 640x480 -> 320x240, 640x360 -> 320x180, 1280x720 -> 320x180,
848x480 -> 424x240 for a 320x240 model. When no such factor comes within a factor of 2 of the model's
pixel count (e.g. 1000x750: /2 gives 2.4x, /5 0.38x), the grid is the size with the camera's aspect and
the model's pixel count (320x240 there). A camera smaller than the model is published at its own size (never
upsampled). ``output_size: input`` publishes at the camera's size. Either way the grid keeps the camera's
aspect, and its pixel ``j`` sits at camera coordinate ``scale * j + offset`` of
``rc_perception.camera.axis_map`` (``f * j + f // 2`` for a whole factor), the convention the fusion and
the point cloud use when they scale K with ``scale_intrinsics``.

**Model input** (letterbox). The camera image is resized, aspect kept, to the largest size that fits the
model input (area average for a whole factor, else bilinear: ``student_trt.preprocess``), centred, and the
rest is filled with the image mirrored at its edges. A 4:3 camera fills a 4:3 model exactly; a 16:9 one
(640x360) becomes 320x180 in rows 30-209 of a 320x240 input. Measured against a constant padding, stretching
and centre-cropping on synthetic 16:9 and 848x480 frames in doc/student.md.

**Mapping back.** Content pixel ``r`` of the resized image covers camera coordinate ``s * r + (s - 1) / 2``
(``s`` = camera pixels per model pixel: area centres). Each published pixel takes the model output at the
content pixel nearest its camera coordinate (nearest neighbour: no depth is blended across an edge, every
class id is one the model produced). For 640x360 -> 320x180 that is model pixel (i + 30, j) exactly. With an
even whole factor the published pixel ``f * j + f // 2`` lies half a camera pixel from the centre of the
block the model averaged (``f * j + (f - 1) / 2``): the model's depth is used for the existing pixel the
rest of the pipeline agrees on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from rc_perception.camera import axis_map

__all__ = ['OUTPUT_SIZES', 'FrameGeometry', 'Placement', 'frame_geometry', 'letterbox', 'nearest_content',
           'output_grid']

#: Values of the node's ``output_size`` parameter.
OUTPUT_SIZES = ('model', 'input')

#: A whole-factor grid is used when its pixel count is within this ratio of the model's (either way).
_WHOLE_FACTOR_TOLERANCE = 2


def _sizes(name: str, size: tuple[int, int]) -> tuple[int, int]:
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f'{name} size must be positive, got {width}x{height}')
    return height, width


def output_grid(camera: tuple[int, int], model: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the grid published for a ``camera`` (height, width) image and a ``model`` input
    (height, width) with ``output_size: model`` (see module doc).

    Raises:
        ValueError: a size that is not positive.
    """
    (ch, cw), (mh, mw) = _sizes('camera', camera), _sizes('model', model)

    def mismatch(f: int) -> Fraction:  # how far the grid decimated by f is from the model's pixel count
        grid, model_pixels = ch * cw, mh * mw * f * f
        return Fraction(max(grid, model_pixels), min(grid, model_pixels))

    common = math.gcd(ch, cw)
    whole = min((f for f in range(1, common + 1) if common % f == 0), key=lambda f: (mismatch(f), f))
    if mismatch(whole) <= _WHOLE_FACTOR_TOLERANCE:
        return ch // whole, cw // whole
    ideal = max(1.0, math.sqrt(ch * cw / (mh * mw)))  # the decimation that gives the model's pixel count
    return max(1, int(ch / ideal + 0.5)), max(1, int(cw / ideal + 0.5))


@dataclass(frozen=True)
class Placement:
    """The camera image inside the model input: resized to ``height`` x ``width`` model pixels with its
    top-left pixel at model pixel (``top``, ``left``); the rest of the input is padding."""

    top: int
    left: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)


def letterbox(camera: tuple[int, int], model: tuple[int, int]) -> Placement:
    """Where a ``camera`` (height, width) image goes in a ``model`` (height, width) input: the largest
    size with the camera's aspect that fits, centred (an odd padding puts the extra row or column last).

    Raises:
        ValueError: a size that is not positive.
    """
    (ch, cw), (mh, mw) = _sizes('camera', camera), _sizes('model', model)
    scale = max(ch / mh, cw / mw)  # camera pixels per model pixel; the larger keeps the image inside
    height, width = min(mh, max(1, int(ch / scale + 0.5))), min(mw, max(1, int(cw / scale + 0.5)))
    return Placement((mh - height) // 2, (mw - width) // 2, height, width)


def nearest_content(camera: int, grid: int, content: int) -> np.ndarray:
    """For each of ``grid`` published pixels on one axis, the nearest of ``content`` resized pixels to its
    camera coordinate (``axis_map``), the resized pixel ``r`` sitting at ``s * r + (s - 1) / 2``.

    The grid is never finer than the camera (``grid <= camera``), so its coordinates lie in
    ``[0, camera - 1]`` and every one is within ``s / 2`` of a resized pixel: no index falls outside.
    """
    u = axis_map(camera, grid).source_coordinate(np.arange(grid, dtype=np.float64))
    s = camera / content
    return np.floor((u - (s - 1.0) / 2.0) / s + 0.5).astype(np.intp)


@dataclass(frozen=True)
class FrameGeometry:
    """Everything that depends on the camera size: the model-input placement and, for each published row
    and column, the model-output row and column it takes (``rows``, ``cols``: read-only index arrays)."""

    camera: tuple[int, int]
    grid: tuple[int, int]
    placement: Placement
    rows: np.ndarray
    cols: np.ndarray


def frame_geometry(camera: tuple[int, int], model: tuple[int, int],
                   output_size: str = 'model') -> FrameGeometry:
    """The ``FrameGeometry`` of ``camera`` (height, width) images for a ``model`` (height, width) input.

    Raises:
        ValueError: a size that is not positive, or an unknown ``output_size``.
    """
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size must be one of {', '.join(OUTPUT_SIZES)}, got {output_size!r}")
    camera = _sizes('camera', camera)
    place = letterbox(camera, model)
    grid = output_grid(camera, model) if output_size == 'model' else camera
    rows = nearest_content(camera[0], grid[0], place.height) + place.top
    cols = nearest_content(camera[1], grid[1], place.width) + place.left
    rows.flags.writeable = cols.flags.writeable = False
    return FrameGeometry(camera, grid, place, rows, cols)
