"""Frame folders on disk: the one layout for evaluation sets, calibration sets and recorded pairs.

A dataset directory holds one sub-folder per kind of image, files matched across kinds by stem::

    DIR/camera.yaml            intrinsics: width, height, fx, fy, cx, cy (optional keys: tof_max_range, ...)
    DIR/rgb/000123.png         8-bit RGB (jpg also read)
    DIR/depth/000123.png       ground-truth depth: 16-bit PNG millimetres (0 = none) or .npy float32 metres
    DIR/labels/000123.png      8-bit semantic class ids (rc_perception.labels.CLASS_NAMES)
    DIR/tof/000123.png         ToF depth: 16-bit PNG millimetres (0 = invalid) or .npy float32 metres
    DIR/confidence/000123.png  ToF confidence: 8- or 16-bit PNG, or .npy float32
    DIR/student/000123.npy     student depth (float32 metres), for calibrate_fusion

Only the kinds a tool needs must exist. Readers return numpy arrays in the package's conventions
(depth: float32 metres with NaN where invalid). Pillow does the image I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rc_perception.depth import to_metres

__all__ = [
    'DEPTH_KINDS', 'IMAGE_SUFFIXES', 'DatasetError', 'Frame', 'frame_stems', 'load_camera', 'read_depth',
    'read_image', 'read_rgb', 'save_camera', 'write_depth', 'write_image',
]

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.npy', '.tif', '.tiff')
DEPTH_KINDS = ('depth', 'tof', 'student')


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used; the message names the path and what was expected."""


@dataclass(frozen=True)
class Frame:
    """Paths of one frame's files, by kind."""

    stem: str
    paths: dict[str, Path]


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def frame_stems(root: str | Path, kinds: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[Frame]:
    """Frames that have a file of every kind in ``kinds`` (and of ``optional`` kinds where present).

    Raises:
        DatasetError: ``root`` or one of the required sub-folders is missing, or no frame has all kinds.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'{root} is not a directory')
    files = {}
    for kind in kinds:
        folder = root / kind
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DatasetError(f"{root} has no '{kind}/' folder (needs {', '.join(k + '/' for k in kinds)}; "
                               f"found {', '.join(present) or 'no folders'})")
        files[kind] = _files(folder)
    for kind in optional:
        if (root / kind).is_dir():
            files[kind] = _files(root / kind)
    stems = set.intersection(*(set(files[k]) for k in kinds)) if kinds else set()
    if not stems:
        counts = ', '.join(f'{k}/: {len(files[k])}' for k in kinds)
        raise DatasetError(f'{root}: no frame has a file in every one of {", ".join(kinds)} ({counts} '
                           f'image files; files are matched by name without extension)')
    return [Frame(stem, {k: f[stem] for k, f in files.items() if stem in f}) for stem in sorted(stems)]


def read_image(path: str | Path) -> np.ndarray:
    """Any image file as an ndarray (8-bit, 16-bit or float), or a .npy array.

    Raises:
        DatasetError: the file cannot be read as an image.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == '.npy':
            return np.load(path, allow_pickle=False)
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as img:
                if img.mode == 'I;16B':
                    return np.asarray(img).astype(np.uint16)
                if img.mode in ('I;16', 'I;16L'):
                    return np.asarray(img, dtype=np.uint16)
                if img.mode == 'I':
                    return np.asarray(img).astype(np.uint32)
                if img.mode not in ('L', 'RGB', 'RGBA', 'F'):
                    img = img.convert('RGB')
                return np.asarray(img)
        except UnidentifiedImageError as exc:
            raise DatasetError(f'{path}: not an image file') from exc
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f'{path}: cannot be read ({exc})') from exc


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Grey images are replicated; alpha is dropped.

    Raises:
        DatasetError: not an 8-bit image.
    """
    img = read_image(path)
    if img.dtype != np.uint8:
        raise DatasetError(f'{path}: expected an 8-bit colour image, got {img.dtype} data '
                           f'of shape {img.shape}')
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def read_depth(path: str | Path) -> np.ndarray:
    """float32 metres, NaN where invalid: 16-bit images are millimetres (0 invalid); .npy / float images
    are metres (non-finite or <= 0 invalid).

    Raises:
        DatasetError: not a single-channel 16-bit or float depth image.
    """
    raw = read_image(path)
    if raw.ndim != 2:
        raise DatasetError(f'{path}: depth must be single-channel, got shape {raw.shape}')
    if raw.dtype in (np.uint16, np.uint32):
        return to_metres(raw, '16UC1')  # millimetres, converted as the nodes convert 16UC1
    if raw.dtype.kind == 'f':
        return to_metres(raw, '32FC1')
    raise DatasetError(f'{path}: depth must be 16-bit millimetres or float metres, got {raw.dtype}')


def write_image(path: str | Path, image: np.ndarray, compress_level: int = 6) -> None:
    """Save uint8 (H, W) / (H, W, 3) or uint16 (H, W) as PNG; anything else as .npy beside it.

    ``compress_level`` is zlib's 0-9 for PNG (1 writes about 4x faster than the default 6, files ~10 %
    larger)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == '.npy':
        np.save(path, image)
        return
    from PIL import Image
    if image.dtype == np.uint16 and image.ndim == 2:
        Image.fromarray(image).save(path, compress_level=compress_level)
    elif image.dtype == np.uint8:
        Image.fromarray(image).save(path, compress_level=compress_level)
    else:
        raise DatasetError(f'{path}: PNG needs uint8 or uint16 data, got {image.dtype}; use a .npy path')


def write_depth(path: str | Path, metres: np.ndarray, compress_level: int = 6) -> None:
    """Save depth as a 16-bit PNG of millimetres (NaN -> 0) or, for a .npy path, float32 metres."""
    path = Path(path)
    if path.suffix.lower() == '.npy':
        write_image(path, metres.astype(np.float32))
        return
    mm = np.nan_to_num(metres.astype(np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    write_image(path, np.clip(np.round(mm), 0, 65535).astype(np.uint16), compress_level)


def load_camera(root: str | Path) -> dict:
    """``camera.yaml`` of a dataset: at least width, height, fx, fy, cx, cy.

    Raises:
        DatasetError: the file is missing or lacks a key.
    """
    import yaml
    path = Path(root) / 'camera.yaml'
    if not path.is_file():
        raise DatasetError(f'{path} is missing (needs width, height, fx, fy, cx, cy)')
    data = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in ('width', 'height', 'fx', 'fy', 'cx', 'cy') if k not in data]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}")
    return data


def save_camera(root: str | Path, **values) -> None:
    import yaml
    path = Path(root) / 'camera.yaml'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: (float(v) if isinstance(v, np.floating) else v)
                                    for k, v in values.items()}, sort_keys=False))
