"""What a deployed student model says about itself: I/O names, input size, preprocessing, classes.

Export writes a ``ModelSpec`` into the ONNX ``metadata_props`` (keys ``rc_perception.*``, JSON values)
and into each TensorRT engine's JSON sidecar; the inference backends, the node, the benchmark and the
calibration read it back, so a model carries its own preprocessing and nobody re-types it.
(No torch, no onnx import at module level: the node on the robot reads metadata without either;
``ModelSpec.from_onnx_file`` imports onnx, or else onnxruntime, when called.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from rc_perception.labels import CLASS_NAMES

__all__ = ['KEY_PREFIX', 'ModelSpec', 'PRECISIONS']

KEY_PREFIX = 'rc_perception.'
PRECISIONS = ('fp32', 'fp16', 'int8')
COLOR_ORDERS = ('rgb', 'bgr')


@dataclass(frozen=True)
class ModelSpec:
    """The contract between an exported model and the code that feeds it.

    The input is ``input_name``: float32 (1, 3, height, width) in ``color_order``, scaled to [0, 1], then
    ``(x - mean) / std`` per channel. Outputs: ``depth_output`` (1, 1, height, width) metres in
    [depth_min, depth_max]; ``seg_output`` (1, len(class_names), height, width) logits.
    """

    height: int = 240
    width: int = 320
    input_name: str = 'rgb'
    depth_output: str = 'depth'
    seg_output: str = 'seg_logits'
    color_order: str = 'rgb'
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    class_names: tuple[str, ...] = CLASS_NAMES
    depth_min: float = 0.1
    depth_max: float = 10.0
    #: Numeric precision of this artifact: fp32, fp16 or int8.
    precision: str = 'fp32'
    #: How INT8 scales were calibrated, e.g. "64 images from calib/ (entropy)"; empty otherwise.
    calibration: str = ''
    #: Free-form provenance: checkpoint name, training data, etc.
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.height <= 0 or self.width <= 0:
            problems.append(f'input size must be positive, got {self.width}x{self.height}')
        if self.color_order not in COLOR_ORDERS:
            problems.append(f"color_order must be one of {', '.join(COLOR_ORDERS)}, got {self.color_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append(f'mean and std need 3 values, std > 0; got mean={self.mean}, std={self.std}')
        if not self.class_names:
            problems.append('class_names is empty')
        if not 0 < self.depth_min < self.depth_max:
            problems.append(f'need 0 < depth_min < depth_max, got {self.depth_min}, {self.depth_max}')
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if problems:
            raise ValueError('invalid model spec: ' + '; '.join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_(self, **changes) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_metadata(self) -> dict[str, str]:
        """``metadata_props`` entries: one ``rc_perception.<field>`` key per field, JSON-encoded."""
        return {KEY_PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model spec field(s): {', '.join(unknown)}")
        values = dict(data)
        for key in ('mean', 'std', 'class_names'):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = 'model') -> ModelSpec:
        """Read the spec back from ``metadata_props``.

        Raises:
            ValueError: no ``rc_perception.*`` keys (not exported by export_trt), or unreadable values.
        """
        ours = {k[len(KEY_PREFIX):]: v for k, v in props.items() if k.startswith(KEY_PREFIX)}
        if not ours:
            raise ValueError(f'{source} has no rc_perception metadata: export it with export_trt, which '
                             'records input size, normalization and classes in the model')
        try:
            data = {k: json.loads(v) for k, v in ours.items()}
        except json.JSONDecodeError as exc:
            raise ValueError(f'{source}: unreadable rc_perception metadata ({exc})') from exc
        known = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in data.items() if k in known})

    @classmethod
    def from_onnx_file(cls, path: str | Path) -> ModelSpec:
        """The spec in the ``metadata_props`` of the ONNX file ``path`` (read with onnx, or else with
        onnxruntime, whichever is installed).

        Raises:
            ImportError: neither onnx nor onnxruntime is installed.
            ValueError: the file is missing or not an ONNX model, or has no (or unreadable) rc_perception
                metadata; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f'{path} does not exist')
        try:
            props = _onnx_metadata_props(path)
        except ImportError:
            raise
        except Exception as exc:  # protobuf DecodeError, onnxruntime's InvalidProtobuf/Fail, OSError, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f'{path} cannot be read as an ONNX model ({first[:200]})') from exc
        return cls.from_metadata(props, source=str(path))


def _onnx_metadata_props(path: Path) -> dict[str, str]:
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort  # the ImportError when neither is installed reaches the caller
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        return dict(session.get_modelmeta().custom_metadata_map)
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
