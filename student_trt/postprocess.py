"""Model outputs -> images: depth (H, W) float32 metres and class ids (H, W) uint8. Pure numpy.

The student's outputs (see ``ModelSpec``) are depth (1, 1, h, w) in metres and segmentation logits
(1, C, h, w) at the model's input size h x w. ``Postprocessor`` turns them into a REP 118 depth image
(float32 metres, NaN where the value is not finite, e.g. an FP16 overflow) and a class-id image (argmax over
C; the first class wins a tie), on the grid a ``student_trt.geometry.FrameGeometry``
names: each published pixel takes the model pixel its ``rows`` and ``cols`` say (nearest neighbour, so that
no depth is interpolated across an object boundary and every class id is one the model produced). Without a
geometry the whole model output is returned (the model's own grid).

The work runs in place: the argmax compares one class plane at a time into scratch arrays kept for the last
grid, and the images go into arrays the caller passes (``out``) or new ones.

Nearest neighbour by pixel centres (``resize_nearest``): output pixel ``i`` takes source pixel
``floor((i + 0.5) * src / dst)`` (``torch.nn.functional.interpolate(mode='nearest-exact')``); for an integer
upscale by k this is ``i // k``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rc_perception.labels import palette
from student_trt.geometry import FrameGeometry, Placement
from student_trt.metadata import ModelSpec

__all__ = ['Postprocessor', 'StudentImages', 'nearest_indices', 'resize_nearest']


class StudentImages(NamedTuple):
    """What the node publishes for one frame."""

    depth: np.ndarray       #: (H, W) float32 metres, NaN where invalid
    class_ids: np.ndarray   #: (H, W) uint8 class index into the model's class_names

    @classmethod
    def empty(cls, height: int, width: int) -> StudentImages:
        return cls(np.empty((height, width), np.float32), np.empty((height, width), np.uint8))


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` output pixels (pixel-centre nearest neighbour)."""
    idx = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst)).astype(np.intp)
    return np.minimum(idx, src - 1)


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H, W) or (H, W, C) to (height, width[, C]) by nearest neighbour (a copy, same dtype)."""
    if height <= 0 or width <= 0:
        raise ValueError(f'output size must be positive, got {width}x{height}')
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    # Two 1-D takes (rows, then columns): several times faster than one 2-D fancy index.
    return image.take(nearest_indices(src_h, height), axis=0).take(nearest_indices(src_w, width), axis=1)


def _plane(output: np.ndarray, name: str, channels: int, height: int, width: int) -> np.ndarray:
    """(C, h, w) view of a (1, C, h, w) output after checking its shape."""
    arr = np.asarray(output)
    if arr.shape != (1, channels, height, width):
        raise ValueError(f'model output {name!r} must have shape (1, {channels}, {height}, {width}), '
                         f'got {arr.shape}')
    return arr[0]


def _as_slice(index: np.ndarray) -> slice | None:
    """``index`` as a slice when it is a run of consecutive integers, else None."""
    start = int(index[0])
    return slice(start, start + len(index)) if np.array_equal(index, np.arange(start, start + len(index))) \
        else None


class _Grid:
    """One published grid's selection of model pixels, and the scratch its frames need."""

    def __init__(self, geometry: FrameGeometry) -> None:
        self.geometry = geometry
        rows, cols = _as_slice(geometry.rows), _as_slice(geometry.cols)
        self.direct = rows is not None and cols is not None  # the grid is a block of the model output
        if self.direct:
            self.rows, self.cols = rows, cols
            size = geometry.grid
        else:  # gather from the block the camera image covers
            lo_r, lo_c = int(geometry.rows.min()), int(geometry.cols.min())
            self.rows = slice(lo_r, int(geometry.rows.max()) + 1)
            self.cols = slice(lo_c, int(geometry.cols.max()) + 1)
            self.take_rows, self.take_cols = geometry.rows - lo_r, geometry.cols - lo_c
            size = (self.rows.stop - lo_r, self.cols.stop - lo_c)
            self.block = StudentImages.empty(*size)
            self.gathered = StudentImages.empty(geometry.grid[0], size[1])
        self.best = np.empty(size, np.float32)
        self.mask = np.empty(size, np.bool_)
        self.out_mask = np.empty(geometry.grid, np.bool_)


class Postprocessor:
    """Turns one model's raw outputs into the node's images (see module doc). Not thread-safe: it keeps
    scratch arrays for the last grid.

    Args:
        spec: the model's self-description (input size, number of classes).
    """

    def __init__(self, spec: ModelSpec) -> None:
        if spec.num_classes > 255:
            raise ValueError(f'class ids are published as mono8: at most 255 classes, the model has '
                             f'{spec.num_classes}')
        self.spec = spec
        self._palette = palette(spec.num_classes)
        size = (spec.height, spec.width)
        self._model_grid = FrameGeometry(size, size, Placement(0, 0, *size), np.arange(size[0]),
                                         np.arange(size[1]))
        self._grid: _Grid | None = None

    def _grid_for(self, geometry: FrameGeometry | None) -> _Grid:
        """The scratch of ``geometry``'s grid (the same object as last frame's: kept, else made)."""
        geometry = geometry or self._model_grid
        if self._grid is None or self._grid.geometry is not geometry:
            self._grid = _Grid(geometry)
        return self._grid

    def _argmax(self, planes: np.ndarray, grid: _Grid, out: np.ndarray) -> None:
        """``out`` = index of the largest of ``planes`` (C, h, w), one class plane at a time."""
        best, mask = grid.best, grid.mask
        np.copyto(best, planes[0])
        out.fill(0)
        for c in range(1, planes.shape[0]):
            np.greater(planes[c], best, out=mask)
            np.maximum(best, planes[c], out=best)
            np.copyto(out, c, where=mask)

    def __call__(self, depth_output: np.ndarray, seg_logits: np.ndarray,
                 geometry: FrameGeometry | None = None, out: StudentImages | None = None) -> StudentImages:
        """Depth and class-id images on ``geometry``'s grid (default: the model's), written into ``out``
        when given (arrays of the grid's size) or into new arrays.

        Raises:
            ValueError: an output whose shape does not match the model's spec, or an ``out`` of another size.
        """
        spec = self.spec
        depth = _plane(depth_output, spec.depth_output, 1, spec.height, spec.width)[0]
        logits = _plane(seg_logits, spec.seg_output, spec.num_classes, spec.height, spec.width)
        grid = self._grid_for(geometry)
        size = grid.geometry.grid
        if out is None:
            out = StudentImages.empty(*size)
        elif out.depth.shape != size or out.class_ids.shape != size:
            raise ValueError(f'out must be {size[1]}x{size[0]} images, got {out.depth.shape[::-1]}')
        block = out if grid.direct else grid.block
        np.copyto(block.depth, depth[grid.rows, grid.cols])
        self._argmax(logits[:, grid.rows, grid.cols], grid, block.class_ids)
        if not grid.direct:
            for image, gathered, target in zip(grid.block, grid.gathered, out, strict=True):
                np.take(image, grid.take_rows, axis=0, out=gathered, mode='clip')
                np.take(gathered, grid.take_cols, axis=1, out=target, mode='clip')
        np.isfinite(out.depth, out=grid.out_mask)
        np.logical_not(grid.out_mask, out=grid.out_mask)
        np.copyto(out.depth, np.float32(np.nan), where=grid.out_mask)
        return out

    def colourize(self, class_ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of (H, W) class ids (``rc_perception.labels.palette``; ids beyond the model's
        classes black), into ``out`` when given."""
        if out is None:
            out = np.empty((*class_ids.shape, 3), np.uint8)
        return np.take(self._palette, class_ids, axis=0, out=out, mode='clip')
