"""The student network: a compact encoder-decoder with a metric depth head and a segmentation head.

Built only from operators every TensorRT from 8.5 to 11 runs well, in FP16 and INT8 alike: Conv,
BatchNormalization (folded into Conv at export), Relu, Resize (bilinear, half-pixel, exact 2x), Add and
Sigmoid (plus the Mul/Add of the depth range). No pooling, no transposed convolutions, no normalization
other than BatchNorm, no data-dependent shapes.

Layout for the default ``StudentConfig`` (input 240x320, total stride 16)::

    stem     3x3 s2 conv            3 -> c      120x160  ─────────────────────────┐ skip
    stage 1  3x3 s2 conv            c -> 2c      60x80   ───────────────────┐     │
    stage 2  3x3 s2 conv + 1 block  2c -> 4c     30x40   ─────────────┐     │     │
    stage 3  3x3 s2 conv + 1 block  4c -> 8c     15x20                │     │     │
    decoder  1x1 lateral, 2x Resize, Add skip, 3x3 conv   8c -> 4c -> 2c -> c at 120x160
    heads    3x3 conv + 1x1 conv each, 2x Resize to 240x320:
             depth = depth_min + (depth_max - depth_min) * sigmoid(x)   (N, 1, H, W) metres
             segmentation logits                                        (N, num_classes, H, W)

"block" = residual block (3x3 conv-BN-ReLU, 3x3 conv-BN, Add, ReLU). With ``base_channels=16`` the net has
about 0.53 M parameters and 0.96 GFLOPs at 240x320 (``count_parameters``, ``estimate_gflops``).

torch is imported here and in the export/training code only; the node and the runtime backends never
import this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

__all__ = ['StudentConfig', 'StudentNet', 'count_parameters', 'estimate_gflops']


@dataclass(frozen=True)
class StudentConfig:
    """Architecture only (preprocessing, class names and depth range live in ``ModelSpec``).

    Attributes:
        base_channels: width of the stem; stage ``i`` has ``base_channels * 2**i`` channels.
        num_classes: segmentation classes (must equal ``len(spec.class_names)``).
        encoder_blocks: residual blocks after the stride-2 conv of the stem and of each stage; its length
            is the number of stride-2 steps, so the total stride is ``2 ** len(encoder_blocks)``.
        head_channels: channels of the 3x3 conv in each head; 0 = ``base_channels``.
    """

    base_channels: int = 16
    num_classes: int = 5
    encoder_blocks: tuple[int, ...] = (0, 0, 1, 1)
    head_channels: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.base_channels, int) or self.base_channels < 4:
            problems.append(f'base_channels must be an int >= 4, got {self.base_channels!r}')
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            problems.append(f'num_classes must be an int >= 1, got {self.num_classes!r}')
        blocks = tuple(self.encoder_blocks)
        if not 2 <= len(blocks) <= 6 or any(not isinstance(b, int) or b < 0 for b in blocks):
            problems.append(f'encoder_blocks needs 2 to 6 counts >= 0, got {self.encoder_blocks!r}')
        if not isinstance(self.head_channels, int) or self.head_channels < 0:
            problems.append(f'head_channels must be an int >= 0, got {self.head_channels!r}')
        if problems:
            raise ValueError('invalid student config: ' + '; '.join(problems))
        object.__setattr__(self, 'encoder_blocks', blocks)

    @property
    def stride(self) -> int:
        """Total stride of the encoder: input height and width must be multiples of it."""
        return 2 ** len(self.encoder_blocks)

    def to_dict(self) -> dict:
        """Plain dict (lists, ints) that ``torch.load(weights_only=True)`` and JSON both read."""
        data = asdict(self)
        data['encoder_blocks'] = list(self.encoder_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StudentConfig:
        """Inverse of ``to_dict``; fields missing from ``data`` take their defaults.

        Raises:
            ValueError: unknown fields or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown student config field(s): {', '.join(unknown)}")
        values = dict(data)
        if 'encoder_blocks' in values:
            values['encoder_blocks'] = tuple(values['encoder_blocks'])
        return cls(**values)

    def check_input_size(self, height: int, width: int) -> None:
        """Raises ValueError unless ``height`` and ``width`` are positive multiples of the total stride."""
        s = self.stride
        if height <= 0 or width <= 0 or height % s or width % s:
            raise ValueError(f'input size {height}x{width} (HxW) must be a positive multiple of the '
                             f'network stride {s} in both dimensions (e.g. {max(1, round(height / s)) * s}x'
                             f'{max(1, round(width / s)) * s})')


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU; TensorRT fuses all three into one kernel."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                                   nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 ConvBN, identity shortcut (Add), ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels)
        self.conv2 = ConvBNReLU(channels, channels, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv2(self.conv1(x)))


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    # Exports as one ONNX Resize (linear, half_pixel, constant scales 2x): supported by TensorRT 8.5+.
    return nn.functional.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False)


class Head(nn.Sequential):
    """3x3 ConvBNReLU then a 1x1 conv with bias to ``cout`` channels (at stride 2)."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__(ConvBNReLU(cin, mid), nn.Conv2d(mid, cout, 1))


class StudentNet(nn.Module):
    """Depth + segmentation student (see module doc for the layout).

    Args:
        config: the architecture.
        depth_min, depth_max: metric range of the depth head (metres), from the model's ``ModelSpec``.

    Raises:
        ValueError: an invalid depth range.
    """

    def __init__(self, config: StudentConfig, depth_min: float = 0.1, depth_max: float = 10.0) -> None:
        super().__init__()
        if not 0 < depth_min < depth_max:
            raise ValueError(f'need 0 < depth_min < depth_max, got {depth_min}, {depth_max}')
        self.config = config
        self.depth_min = float(depth_min)
        self.depth_max = float(depth_max)
        c = config.base_channels
        widths = [c * 2 ** i for i in range(len(config.encoder_blocks))]
        stages = []
        cin = 3
        for width, blocks in zip(widths, config.encoder_blocks, strict=True):
            stages.append(nn.Sequential(ConvBNReLU(cin, width, stride=2),
                                        *(ResidualBlock(width) for _ in range(blocks))))
            cin = width
        self.encoder = nn.ModuleList(stages)
        # Decoder step i goes from widths[i + 1] (coarser) to widths[i]: 1x1 lateral at the coarse
        # resolution (cheap), 2x Resize, Add the encoder skip, 3x3 conv to mix.
        self.lateral = nn.ModuleList(ConvBNReLU(widths[i + 1], widths[i], kernel=1)
                                     for i in range(len(widths) - 1))
        self.fuse = nn.ModuleList(ConvBNReLU(widths[i], widths[i]) for i in range(len(widths) - 1))
        mid = config.head_channels or c
        self.depth_head = Head(c, mid, 1)
        self.seg_head = Head(c, mid, config.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (N, 3, H, W) float32, normalized by ``student_trt.preprocess.Preprocessor``.

        Returns:
            depth (N, 1, H, W) metres in [depth_min, depth_max], segmentation logits (N, num_classes, H, W).

        Raises:
            ValueError: H or W is not a multiple of the network stride (``config.stride``).
        """
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.config.check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(skips))):
            x = self.fuse[i](_upsample2x(self.lateral[i](x)) + skips[i])
        depth = _upsample2x(self.depth_head(x))
        seg = _upsample2x(self.seg_head(x))
        depth = self.depth_min + (self.depth_max - self.depth_min) * torch.sigmoid(depth)
        return depth, seg


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not, BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def estimate_gflops(model: nn.Module, height: int = 240, width: int = 320) -> float:
    """Forward GFLOPs for one (1, 3, height, width) image: 2 x the multiply-accumulates of every Conv2d.

    Measured with forward hooks on one CPU forward pass (MACs of a conv = output elements x
    in_channels / groups x kernel area). BatchNorm is folded into the convolutions at export and ReLU,
    Add, Resize and Sigmoid are element-wise (together under 2 % of the total for StudentNet), so they are
    not counted.
    """
    macs = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2.0 * macs / 1e9
