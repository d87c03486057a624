"""Model outputs -> images: depth (H, W) float32 metres and class ids (H, W) uint8. Pure numpy.

The student's outputs (see ``ModelSpec``) are depth (1, 1, h, w) in metres and segmentation logits
(1, C, h, w) at the model's input size h x w. ``Postprocessor`` turns them into a REP 118 depth image
(float32 metres, NaN where the value is not finite, e.g. an FP16 overflow) and a class-id image (argmax
over C), optionally resized to another size (the camera's) by nearest neighbour, so that no depth is
interpolated across an object boundary and every class id stays one the model produced.

Nearest neighbour uses pixel centres: output pixel ``i`` takes source pixel ``floor((i + 0.5) * src / dst)``
(``torch.nn.functional.interpolate(mode='nearest-exact')``). For an integer upscale by k this is
``i // k``: each model pixel becomes a k x k block.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from student_trt.metadata import ModelSpec

__all__ = ['Postprocessor', 'StudentImages', 'nearest_indices', 'resize_nearest']


class StudentImages(NamedTuple):
    """What the node publishes for one frame."""

    depth: np.ndarray       #: (H, W) float32 metres, NaN where invalid
    class_ids: np.ndarray   #: (H, W) uint8 class index into the model's class_names


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


def _plane(output: np.ndarray, name: str, channels: int | None, height: int, width: int) -> np.ndarray:
    """(C, h, w) view of a (1, C, h, w) output after checking its shape."""
    arr = np.asarray(output)
    want_c = channels if channels is not None else 'C'
    if arr.ndim != 4 or arr.shape[0] != 1 or arr.shape[2:] != (height, width) or \
            (channels is not None and arr.shape[1] != channels):
        raise ValueError(f'model output {name!r} must have shape (1, {want_c}, {height}, {width}), '
                         f'got {arr.shape}')
    return arr[0]


class Postprocessor:
    """Turns one model's raw outputs into the node's images (see module doc).

    Args:
        spec: the model's self-description (input size, number of classes).
    """

    def __init__(self, spec: ModelSpec) -> None:
        if spec.num_classes > 255:
            raise ValueError(f'class ids are published as mono8: at most 255 classes, the model has '
                             f'{spec.num_classes}')
        self.spec = spec

    def depth(self, output: np.ndarray) -> np.ndarray:
        """(h, w) float32 metres from the (1, 1, h, w) depth output; non-finite values become NaN."""
        plane = _plane(output, self.spec.depth_output, 1, self.spec.height, self.spec.width)[0]
        depth = plane.astype(np.float32, copy=True)
        np.putmask(depth, ~np.isfinite(depth), np.float32(np.nan))
        return depth

    def class_ids(self, logits: np.ndarray) -> np.ndarray:
        """(h, w) uint8 argmax over the classes of the (1, C, h, w) logits."""
        planes = _plane(logits, self.spec.seg_output, self.spec.num_classes, self.spec.height,
                        self.spec.width)
        return np.argmax(planes, axis=0).astype(np.uint8)

    def __call__(self, depth_output: np.ndarray, seg_logits: np.ndarray,
                 size: tuple[int, int] | None = None) -> StudentImages:
        """Depth and class-id images, at the model's size or at ``size`` = (height, width).

        Raises:
            ValueError: an output whose shape does not match the model's spec, or a non-positive size.
        """
        depth = self.depth(depth_output)
        ids = self.class_ids(seg_logits)
        if size is not None and tuple(size) != depth.shape:
            height, width = int(size[0]), int(size[1])
            depth, ids = resize_nearest(depth, height, width), resize_nearest(ids, height, width)
        return StudentImages(depth, ids)
