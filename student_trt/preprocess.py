"""Camera image -> model input. Pure numpy.

``Preprocessor`` is THE preprocessing: the node, INT8 calibration in export, training, the benchmark and
the demo all call it, so a model sees at run time exactly what it was calibrated and evaluated on.

Steps: take the three colour channels in the model's order (alpha dropped, mono replicated); resize, aspect
kept, to the letterbox placement of ``student_trt.geometry`` (a 4:3 camera fills a 4:3 model): a whole-factor
downscale is the area average over k x k blocks (what bilinear half-pixel sampling gives at 2x, without its
aliasing beyond), any other size bilinear with half-pixel centres, like
``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``; scale to [0, 1] and normalize per
channel; write NCHW float32, filling the padding with the image mirrored at its edges (measured better than
a constant, a crop or a stretch for a model trained on 4:3 images: doc/student.md).

The work is done per channel plane in place, in scratch arrays kept for the last camera size: a frame
allocates nothing large unless the caller asks for a new output array (``out=None``).
"""

from __future__ import annotations

import numpy as np

from student_trt.geometry import Placement, letterbox
from student_trt.metadata import ModelSpec

__all__ = ['INPUT_ENCODINGS', 'Preprocessor', 'mirror_indices', 'resize']

#: Image encodings the student accepts.
INPUT_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')


def _bilinear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight of i1 for each destination pixel (half-pixel centres)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0.0, src - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (pos - i0).astype(np.float32)


class _Resize:
    """Resizes channels of an (H, W, C) uint8 image to (height, width) float32 planes: identity, area average
    over k x k blocks (whole factor k on both axes) or bilinear; the scratch it needs is allocated once."""

    def __init__(self, src: tuple[int, int, int], height: int, width: int) -> None:
        src_h, src_w, channels = src
        self.factor = 0
        if (src_h, src_w) == (height, width):
            self.factor = 1
        elif src_h % height == 0 and src_w % width == 0 and src_h // height == src_w // width:
            self.factor = src_h // height
        if self.factor == 0:
            y0, y1, wy = _bilinear_taps(src_h, height)
            self._y = (y0, y1, wy[:, None], (1 - wy)[:, None])
            x0, x1, wx = _bilinear_taps(src_w, width)
            self._x = (x0, x1, wx, (1 - wx).astype(np.float32))
            self._rows = np.empty((2, height, src_w, channels), np.uint8)  # source rows i0 and i1
            self._blend = np.empty((2, channels, height, src_w), np.float32)  # channel planes
            self._cols = np.empty((height, width), np.float32)

    def __call__(self, image: np.ndarray, channels: tuple[int, ...], out: np.ndarray) -> np.ndarray:
        """``out[i]`` (float32, the target size) = channel ``channels[i]`` of ``image`` resized."""
        k = self.factor
        if not k:
            self._bilinear(image, channels, out)
        for plane, c in zip(out, channels, strict=True):
            if k == 1:
                np.copyto(plane, image[:, :, c], casting='safe')
            elif k:
                # Sum the k*k phase-shifted sub-grids at the output size: the area average of a mean over a
                # (height, k, width, k) view, several times faster (numpy reduces strided axes slowly).
                np.copyto(plane, image[0::k, 0::k, c], casting='safe')
                for dy in range(k):
                    for dx in range(k):
                        if dy or dx:
                            np.add(plane, image[dy::k, dx::k, c], out=plane)
                plane *= np.float32(1.0 / (k * k))
        return out

    def _bilinear(self, image: np.ndarray, channels: tuple[int, ...], out: np.ndarray) -> None:
        (y0, y1, wy, wy0), (x0, x1, wx, wx0) = self._y, self._x
        rows, blend, cols = self._rows, self._blend, self._cols
        np.take(image, y0, axis=0, out=rows[0], mode='clip')  # whole rows: no copy of a contiguous image
        np.take(image, y1, axis=0, out=rows[1], mode='clip')
        np.multiply(rows[0].transpose(2, 0, 1), wy0, out=blend[0])
        np.multiply(rows[1].transpose(2, 0, 1), wy, out=blend[1])
        np.add(blend[0], blend[1], out=blend[0])  # rows blended: (C, height, src_w)
        for plane, c in zip(out, channels, strict=True):
            np.take(blend[0, c], x0, axis=1, out=plane, mode='clip')  # contiguous: take copies nothing
            plane *= wx0
            np.take(blend[0, c], x1, axis=1, out=cols, mode='clip')
            cols *= wx
            plane += cols


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H, W, C) to a new float32 (height, width, C): area average for whole-factor downscales,
    else bilinear with half-pixel centres (the ``Preprocessor``'s resize, for one image)."""
    channels = tuple(range(image.shape[2]))
    out = np.empty((len(channels), height, width), np.float32)
    return _Resize(image.shape, height, width)(image, channels, out).transpose(1, 2, 0)


class Preprocessor:
    """Turns camera images into the input tensor of one model (see module doc). Not thread-safe: it keeps
    scratch arrays for the last camera size."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # (x / 255 - mean) / std == x * scale + offset, per channel
        std = np.asarray(spec.std, np.float32)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
        self.shape = (1, 3, spec.height, spec.width)
        self._camera: tuple[int, ...] | None = None  # (H, W, C) of the last image
        self._placement: Placement | None = None
        self._resize: _Resize | None = None
        self._planes = np.empty((3, 0, 0), np.float32)  # resized source channels
        self._mirror: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.intp), np.empty(0, np.intp))

    def _source(self, image: np.ndarray, encoding: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        """(H, W, C) uint8 view of ``image`` and, for each model channel, its channel in that view.

        Raises:
            ValueError: an encoding the student cannot use, or an array that does not match it.
        """
        if encoding not in INPUT_ENCODINGS:
            raise ValueError(f"student input must be one of {', '.join(INPUT_ENCODINGS)}, "
                             f"got '{encoding}'")
        if image.dtype != np.uint8:
            raise ValueError(f"'{encoding}' image must be uint8, got {image.dtype}")
        if encoding == 'mono8':
            if image.ndim != 2:
                raise ValueError(f"'mono8' image must be (H, W), got shape {image.shape}")
            return image[:, :, None], (0, 0, 0)
        want = 4 if encoding in ('rgba8', 'bgra8') else 3
        if image.ndim != 3 or image.shape[2] != want:
            raise ValueError(f"'{encoding}' image must be (H, W, {want}), got shape {image.shape}")
        source_order = 'bgr' if encoding.startswith('bgr') else 'rgb'
        return image, ((0, 1, 2) if source_order == self.spec.color_order else (2, 1, 0))

    def _placement_for(self, src: np.ndarray) -> Placement:
        """Where an ``src`` image goes (``geometry.letterbox``); makes the scratch for its size."""
        if src.shape != self._camera:
            place = letterbox(src.shape[:2], (self.spec.height, self.spec.width))
            self._resize = _Resize(src.shape, place.height, place.width)
            self._mirror = (mirror_indices(place.top, place.height, self.spec.height),
                            mirror_indices(place.left, place.width, self.spec.width))
            self._planes = np.empty((3, place.height, place.width), np.float32)
            self._placement, self._camera = place, src.shape
        return self._placement

    def __call__(self, image: np.ndarray, encoding: str = 'rgb8',
                 out: np.ndarray | None = None) -> np.ndarray:
        """float32 (1, 3, height, width) model input for one image, written into ``out`` when given (the
        node passes the same array every frame) or into a new array.

        Raises:
            ValueError: an encoding the student cannot use, an array that does not match it, or an ``out``
                that is not a float32 array of the model's input shape.
        """
        src, channels = self._source(image, encoding)
        if out is None:
            out = np.empty(self.shape, np.float32)
        elif out.shape != self.shape or out.dtype != np.float32:
            raise ValueError(f'out must be float32 {self.shape}, got {out.dtype} {out.shape}')
        place = self._placement_for(src)
        sources = tuple(sorted(set(channels)))  # mono: one plane serves the three channels
        planes = self._resize(src, sources, self._planes[:len(sources)])
        for c, source in enumerate(channels):
            dst = out[0, c, place.rows, place.cols]
            np.multiply(planes[sources.index(source)], self._scale[c], out=dst)
            dst += self._offset[c]
        if (place.height, place.width) != (self.spec.height, self.spec.width):
            _mirror_into_padding(out[0], place, *self._mirror)
        return out

    def batch(self, images: list[np.ndarray], encoding: str = 'rgb8') -> np.ndarray:
        """float32 (N, 3, height, width) for a list of images (calibration, evaluation, training)."""
        out = np.empty((len(images), *self.shape[1:]), np.float32)
        for i, img in enumerate(images):
            self(img, encoding, out[i:i + 1])
        return out


def mirror_indices(start: int, length: int, size: int) -> np.ndarray:
    """For each of ``size`` positions, the position inside ``[start, start + length)`` that mirrors it
    across the nearer edge without repeating the edge pixel (numpy's 'reflect', repeated as needed; the
    edge pixel itself when ``length`` is 1). Positions inside map to themselves."""
    offset = np.arange(size) - start
    if length == 1:
        return np.full(size, start, np.intp)
    period = 2 * (length - 1)
    folded = np.mod(offset, period)
    return start + np.where(folded < length, folded, period - folded)


def _mirror_into_padding(planes: np.ndarray, place: Placement, rows: np.ndarray, cols: np.ndarray) -> None:
    """Fill the padding of (C, H, W) ``planes`` around ``place`` with the content mirrored (``rows`` and
    ``cols``: ``mirror_indices`` of each axis): each band is one gather of at most C x 30 x 320 values for a
    16:9 camera."""
    bottom, right = place.top + place.height, place.left + place.width
    if place.top or bottom < planes.shape[1]:
        planes[:, :place.top] = planes[:, rows[:place.top]]
        planes[:, bottom:] = planes[:, rows[bottom:]]
    if place.left or right < planes.shape[2]:
        planes[:, :, :place.left] = planes[:, :, cols[:place.left]]
        planes[:, :, right:] = planes[:, :, cols[right:]]
