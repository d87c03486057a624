"""Student checkpoints: one ``.pt`` file that carries the weights and everything needed to use them.

Format (``FORMAT`` = ``'rc_perception.student/1'``): ``torch.save`` of a plain dict, read back with
``torch.load(path, map_location='cpu', weights_only=True)`` (no pickled classes, so loading a checkpoint
cannot run code)::

    {
      'format':     'rc_perception.student/1',
      'config':     StudentConfig.to_dict()   # architecture: base_channels, num_classes, encoder_blocks, ...
      'spec':       ModelSpec.to_dict()       # input height/width, colour order, mean/std, class names,
                                              # depth range, I/O names (precision 'fp32', calibration '')
      'state_dict': {name: tensor}            # StudentNet(config).state_dict(), float32, on the CPU
      'extra':      {...}                     # free-form provenance (epochs, losses, data set); plain types
    }

Every value is a str, int, float, bool, None, list or dict (plus the tensors), the only types
``weights_only`` loads. Loading is strict: an unknown ``format`` tag, unknown top-level or config keys, a
state dict with missing or unexpected keys or a tensor of the wrong shape all fail with a
``CheckpointError`` (a ``ValueError``) naming the file and the offending keys. Config fields absent from an
older checkpoint take their defaults (``save_checkpoint`` always writes all of them). The spec must agree
with the config: as many class names as ``num_classes``, an input size divisible by the network stride,
the model's depth range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rc_offline.model import StudentConfig, StudentNet
from student_trt.metadata import ModelSpec

__all__ = ['FORMAT', 'Checkpoint', 'CheckpointError', 'load_checkpoint', 'read_checkpoint', 'save_checkpoint']

FORMAT = 'rc_perception.student/1'
_KEYS = ('format', 'config', 'spec', 'state_dict', 'extra')
_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Checkpoint:
    """The validated contents of a checkpoint file (weights not yet in a model)."""

    path: Path
    config: StudentConfig
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)

    def build(self) -> StudentNet:
        """A ``StudentNet`` in eval mode with these weights (strict: names and shapes must all match).

        Raises:
            CheckpointError: missing, unexpected or wrongly shaped tensors.
        """
        model = StudentNet(self.config, self.spec.depth_min, self.spec.depth_max)
        expected = model.state_dict()
        problems = []
        missing = [k for k in expected if k not in self.state_dict]
        unexpected = [k for k in self.state_dict if k not in expected]
        if missing:
            problems.append(f'missing {_listing(missing)}')
        if unexpected:
            problems.append(f'unexpected {_listing(unexpected)}')
        wrong = [f'{k} {tuple(self.state_dict[k].shape)} (model has {tuple(v.shape)})'
                 for k, v in expected.items() if k in self.state_dict and self.state_dict[k].shape != v.shape]
        if wrong:
            problems.append(f'wrong shape {_listing(wrong)}')
        if problems:
            raise CheckpointError(f"{self.path}: weights do not fit the architecture it declares "
                                  f"({_describe(self.config)}): {'; '.join(problems)}")
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


def _listing(items: list[str]) -> str:
    shown = ', '.join(items[:_MAX_LISTED])
    more = f' and {len(items) - _MAX_LISTED} more' if len(items) > _MAX_LISTED else ''
    return f'{len(items)} tensor(s): {shown}{more}'


def _describe(config: StudentConfig) -> str:
    return ', '.join(f'{k}={v}' for k, v in config.to_dict().items())


def _plain(value, where: str):
    """``value`` with tuples as lists, numpy scalars as Python numbers and subclasses of the plain types
    (``torch.__version__``, a ``TorchVersion``; an ``IntEnum``) as the plain type itself, which is all
    ``torch.load(weights_only=True)`` accepts; anything else fails."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    if isinstance(value, str):
        return str.__str__(value)  # the characters as an exact str, whatever the subclass's __str__ says
    for plain in (bool, int, float):  # bool first: it is an int
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f'{where}: dict keys must be strings, got {bad[0]!r}')
        return {k: _plain(v, f'{where}.{k}') for k, v in value.items()}
    raise ValueError(f'{where}: {type(value).__name__} cannot be stored in a checkpoint '
                     '(only str, int, float, bool, None, list and dict)')


def _check_consistent(config: StudentConfig, spec: ModelSpec) -> list[str]:
    problems = []
    if spec.num_classes != config.num_classes:
        problems.append(f'spec names {spec.num_classes} classes ({", ".join(spec.class_names)}) but the '
                        f'architecture has num_classes={config.num_classes}')
    try:
        config.check_input_size(spec.height, spec.width)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def save_checkpoint(path: str | Path, model: StudentNet, spec: ModelSpec, *,
                    extra: dict | None = None) -> None:
    """Write ``model`` (weights + config) and ``spec`` to ``path`` (via a temporary file, then renamed).

    The spec is stored with ``precision='fp32'`` and no calibration note (those describe exported
    artifacts, not checkpoints).

    Args:
        path: destination ``.pt`` file; parent folders are created.
        model: the network; its weights are copied to the CPU.
        spec: input size, preprocessing, class names, depth range and I/O names for this model.
        extra: provenance (epochs, losses, data set, ...): str, int, float, bool, None, list, dict only.

    Raises:
        ValueError: ``spec`` disagrees with the model (classes, depth range, input size not divisible by
            the stride), or ``extra`` holds a type that ``torch.load(weights_only=True)`` cannot read.
    """
    config = model.config
    problems = _check_consistent(config, spec)
    if (spec.depth_min, spec.depth_max) != (model.depth_min, model.depth_max):
        problems.append(f'spec depth range [{spec.depth_min}, {spec.depth_max}] differs from the '
                        f"model's [{model.depth_min}, {model.depth_max}]")
    if problems:
        raise ValueError(f'cannot save checkpoint {path}: ' + '; '.join(problems))
    spec = spec.with_(precision='fp32', calibration='')
    payload = {
        'format': FORMAT,
        'config': config.to_dict(),
        'spec': _plain(spec.to_dict(), 'spec'),
        'state_dict': {k: v.detach().to('cpu', copy=True) for k, v in model.state_dict().items()},
        'extra': _plain(dict(extra or {}), 'extra'),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a checkpoint's contents without building the model.

    Raises:
        CheckpointError: missing or unreadable file, not a student checkpoint (format tag), unknown keys,
            invalid config or spec, or a spec that disagrees with the config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist' if not path.exists()
                              else f'checkpoint {path} is not a file')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch.load raises many types (zip, pickle, EOF, weights_only rejections)
        first = (str(exc).strip().splitlines() or [''])[0]
        raise CheckpointError(f'{path}: cannot be read as a weights-only torch checkpoint '
                              f'({type(exc).__name__}: {first[:200]})') from exc
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        found = (f"format tag {data.get('format')!r}" if isinstance(data, dict) and 'format' in data
                 else f"keys {', '.join(sorted(map(str, data))[:_MAX_LISTED])}" if isinstance(data, dict)
                 else f'a {type(data).__name__}')
        raise CheckpointError(f"{path}: not an rc_perception student checkpoint (expected format "
                              f"'{FORMAT}', found {found}); save it with rc_offline.checkpoint."
                              'save_checkpoint')
    unknown = sorted(set(data) - set(_KEYS))
    missing = [k for k in _KEYS if k not in data and k != 'extra']
    if unknown or missing:
        parts = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + \
                ([f"missing key(s) {', '.join(missing)}"] if missing else [])
        raise CheckpointError(f"{path}: {'; '.join(parts)}")
    if not isinstance(data['state_dict'], dict) or \
            not all(isinstance(v, torch.Tensor) for v in data['state_dict'].values()):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors")
    try:
        config = StudentConfig.from_dict(data['config'])
        spec = ModelSpec.from_dict(data['spec'])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f'{path}: {exc}') from exc
    problems = _check_consistent(config, spec)
    if problems:
        raise CheckpointError(f'{path}: ' + '; '.join(problems))
    return Checkpoint(path, config, spec, dict(data['state_dict']), dict(data.get('extra') or {}))


def load_checkpoint(path: str | Path) -> tuple[StudentNet, ModelSpec]:
    """The model (eval mode, CPU) and its spec from a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: see ``read_checkpoint`` and ``Checkpoint.build``.
    """
    ckpt = read_checkpoint(path)
    return ckpt.build(), ckpt.spec
