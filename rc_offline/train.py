"""Train the demo student on synthetic scenes and write a checkpoint (``train_student``).

Data: independent random frames of ``rc_offline.scenes`` (a new room or corridor per frame). The input
is made exactly as deployed: the 640x480 RGB through ``student_trt.preprocess.Preprocessor`` (area average
to 240x320, normalization). Targets are ground-truth depth and labels rendered directly at 240x320 with
the intrinsics scaled by ``rc_offline.scenes.area_intrinsics``, whose pixel centres are the centres of
the 2x2 blocks the area average combines (see ``scenes.training_sample``).

Loss: L1 of log depth (scale-aware, metric) + 0.5 x cross-entropy of the segmentation. AdamW with a short
warm-up and cosine decay; random horizontal flips and small brightness/colour jitter. Mixed precision
(bfloat16) on CUDA.

At the end the script evaluates on held-out frames of another seed with ``rc_offline.metrics`` (depth
RMSE, AbsRel, delta < 1.25 at 240x320 over every pixel; mIoU) next to a constant-depth baseline (the
training set's median depth), prints a table and, last, one JSON line, and stores the figures in the
checkpoint's ``extra``.

    train_student --out models/student_demo.pt --steps 3000 --frames 4000 --seed 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rc_offline.cli import ArgumentParser, ToolError, UsageError, require, run_tool
from rc_offline.metrics import ConfusionMatrix, DepthErrors
from rc_perception.labels import CLASS_NAMES
from student_trt.metadata import ModelSpec
from student_trt.preprocess import Preprocessor

__all__ = ['DEMO_SPEC', 'Progress', 'TrainingSet', 'augment', 'evaluate', 'main', 'optimize', 'predict',
           'render_set', 'score', 'train']

#: The demo student's contract: 240x320 input, ImageNet normalization, the five scene classes, 0.1-10 m.
DEMO_SPEC = ModelSpec(height=240, width=320, class_names=CLASS_NAMES, depth_min=0.1, depth_max=10.0)
#: Default seed of the held-out frames; training seeds should differ from it.
HELDOUT_SEED = 1001


@dataclass
class TrainingSet:
    """Preprocessed inputs and targets in memory.

    Attributes:
        inputs: (N, 3, H, W) float16, the Preprocessor's output.
        depth: (N, H, W) float32 metres.
        labels: (N, H, W) uint8 class ids.
    """

    inputs: np.ndarray
    depth: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


def _render_one(job: tuple[int, int, ModelSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from rc_offline import scenes
    seed, index, spec = job
    scale = scenes.HEIGHT // spec.height
    rgb, depth, labels = scenes.training_sample(seed, index, scale=scale)
    return Preprocessor(spec)(rgb, 'rgb8')[0].astype(np.float16), depth, labels


def render_set(seed: int, count: int, spec: ModelSpec = DEMO_SPEC, workers: int = 1,
               progress: bool = False) -> TrainingSet:
    """Frames ``0 .. count - 1`` of split ``seed``, preprocessed for ``spec`` (deterministic for any
    ``workers``).

    Raises:
        ValueError: ``spec``'s input size is not 640x480 divided by a whole factor.
    """
    from rc_offline import scenes
    if scenes.HEIGHT % spec.height or scenes.WIDTH % spec.width or \
            scenes.HEIGHT // spec.height != scenes.WIDTH // spec.width:
        raise ValueError(f'model input {spec.width}x{spec.height} must be {scenes.WIDTH}x{scenes.HEIGHT} '
                         'divided by a whole factor (e.g. 320x240)')
    inputs = np.empty((count, 3, spec.height, spec.width), np.float16)
    depth = np.empty((count, spec.height, spec.width), np.float32)
    labels = np.empty((count, spec.height, spec.width), np.uint8)
    jobs = [(seed, i, spec) for i in range(count)]
    started = time.perf_counter()
    if workers > 1:
        pool = multiprocessing.get_context('fork').Pool(workers)
        results = pool.imap(_render_one, jobs, chunksize=4)
    else:
        pool, results = None, map(_render_one, jobs)
    try:
        for i, (x, d, lab) in enumerate(results):
            inputs[i], depth[i], labels[i] = x, d, lab
            if progress and ((i + 1) % 200 == 0 or i + 1 == count):
                rate = (i + 1) / (time.perf_counter() - started)
                print(f'  rendered {i + 1}/{count} frames ({rate:.1f} frames/s)', flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return TrainingSet(inputs, depth, labels)


def score(pred_depth: np.ndarray, gt_depth: np.ndarray, pred_labels: np.ndarray | None = None,
          gt_labels: np.ndarray | None = None, num_classes: int = len(CLASS_NAMES)) -> dict[str, float]:
    """Depth RMSE / AbsRel / delta1 (``rc_offline.metrics``) and, given labels, mIoU."""
    errors = DepthErrors().add(pred_depth, gt_depth).summary()
    out = {'rmse': errors['rmse'], 'absrel': errors['absrel'], 'delta1': errors['delta1']}
    if pred_labels is not None and gt_labels is not None:
        out['miou'] = ConfusionMatrix(num_classes).add(pred_labels, gt_labels).miou()
    return out


def predict(model, inputs: np.ndarray, device: str = 'cpu', batch_size: int = 16):
    """Depth (N, H, W) float32 metres and class ids (N, H, W) uint8 of a model for preprocessed inputs."""
    import torch
    model.eval()
    depth, labels = [], []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).float().to(device)
            d, seg = model(x)
            depth.append(d[:, 0].float().cpu().numpy())
            labels.append(seg.argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(depth), np.concatenate(labels)


def evaluate(model, data: TrainingSet, baseline_depth: float, device: str = 'cpu') -> dict[str, dict]:
    """Held-out figures of ``model`` and of the constant ``baseline_depth`` on ``data``."""
    depth, labels = predict(model, data.inputs, device)
    constant = np.full_like(data.depth, baseline_depth)
    return {'student': score(depth, data.depth, labels, data.labels),
            'baseline': score(constant, data.depth)}


def _lr_factor(progress: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return progress / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


class Progress:
    """A progress bar for training: redrawn in place on a terminal, one line per 5 % otherwise.

    Progress is ``max(step / steps, elapsed / time_limit)``: a time limit shortens the schedule.
    ``update`` keeps a running mean of the named loss terms (sampled every 10 steps) to show beside it.
    """

    def __init__(self, steps: int, time_limit: float | None = None, log=print, stream=None) -> None:
        self.steps = steps
        self.time_limit = time_limit
        self.log = log
        self.tty = bool(stream is not None and stream.isatty())
        self.stream = stream
        self.started = time.perf_counter()
        self.running: dict[str, float] = {}
        self._shown = -1

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fraction(self, step: int) -> float:
        return max(step / self.steps, self.elapsed() / self.time_limit if self.time_limit else 0.0)

    def update(self, step: int, terms: dict, lr: float) -> None:
        if step % 10 == 1 or step == 1:
            for name, value in terms.items():
                v = float(value.detach())
                self.running[name] = v if name not in self.running else 0.8 * self.running[name] + 0.2 * v
        done = min(1.0, self.fraction(step))
        ticks = int(done * 20)
        if ticks == self._shown and not self.tty:
            return
        self._shown = ticks
        elapsed = self.elapsed()
        eta = elapsed * (1 - done) / done if done > 0 else float('nan')
        losses = '  '.join(f'{name} {v:.4f}' for name, v in self.running.items())
        line = (f'[{"#" * ticks}{"." * (20 - ticks)}] {100 * done:3.0f} %  step {step}/{self.steps}  '
                f'{losses}  lr {lr:.2e}  {elapsed:.0f} s, about {eta:.0f} s left')
        if self.tty:
            self.stream.write('\r' + line)
            self.stream.flush()
        else:
            self.log(f'  {line}')

    def close(self) -> None:
        if self.tty:
            self.stream.write('\n')


def augment(x, maps: list, gen):
    """Random horizontal flips of a batch (``x`` (N, 3, H, W) and each of ``maps``, (N, H, W) tensors
    flipped alike) and brightness / colour-balance jitter of ``x`` in normalized space."""
    import torch
    n = x.shape[0]
    flip = torch.rand(n, device=x.device, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    maps = [torch.where(flip[:, None, None], m.flip(-1), m) for m in maps]
    x = x * (1 + 0.1 * torch.randn(n, 1, 1, 1, device=x.device, generator=gen)) \
        + 0.1 * torch.randn(n, 3, 1, 1, device=x.device, generator=gen)
    return x, maps


def optimize(model, batch: Callable[[], tuple], loss: Callable[[tuple, list], dict], *, steps: int,
             lr: float, device: str, time_limit: float | None = None, log=print, progress_stream=None,
             freeze_batchnorm: bool = False) -> tuple[int, float]:
    """The training loop train_student and finetune_student share: AdamW (weight decay 1e-4) over the
    model's trainable parameters, 3 % warm-up then cosine decay over ``Progress.fraction`` (so a time limit
    compresses the schedule instead of cutting it off), bfloat16 autocast on CUDA.

    Args:
        batch: returns ``(x, targets)``: the (N, 3, H, W) input on ``device`` and a list of target tensors.
        loss: ``loss((depth, seg_logits), targets)`` -> named loss terms; their sum is minimized.
        progress_stream: a terminal to draw the progress bar on (else ``log`` gets a line per 5 %).
        freeze_batchnorm: keep BatchNorm layers in eval mode: normalization by the running statistics the
            model came with (their scale and shift still learn).

    Returns:
        (steps done, seconds).
    """
    import torch

    cuda = device.startswith('cuda')
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    progress = Progress(steps, time_limit, log, progress_stream)
    step = 0
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    while step < steps:
        done = progress.fraction(step)
        if done >= 1.0:
            break
        for group in opt.param_groups:
            group['lr'] = lr * _lr_factor(done)
        x, targets = batch()
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=cuda):
            outputs = model(x)
        terms = loss(tuple(o.float() for o in outputs), targets)
        total = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        step += 1
        progress.update(step, terms, opt.param_groups[0]['lr'])
    progress.close()
    return step, progress.elapsed()


def train(data: TrainingSet, spec: ModelSpec, *, steps: int, batch_size: int, lr: float, device: str,
          base_channels: int = 16, seed: int = 0, time_limit: float | None = None, log=print,
          progress_stream=None):
    """Train a ``StudentNet`` on ``data``; returns (model in eval mode on the CPU, steps done, seconds).

    Loss: L1 of log depth over every pixel (the rendered ground truth is dense) + 0.5 x cross-entropy of
    the labels. The schedule is ``optimize``'s.
    """
    import torch
    from torch.nn import functional as F

    from rc_offline.model import StudentConfig, StudentNet

    torch.manual_seed(seed)
    config = StudentConfig(base_channels=base_channels, num_classes=spec.num_classes)
    model = StudentNet(config, spec.depth_min, spec.depth_max).to(device)
    if device.startswith('cuda'):
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    inputs = torch.from_numpy(data.inputs).to(device)
    depth = torch.from_numpy(data.depth).to(device)
    labels = torch.from_numpy(data.labels).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)

    def batch():
        idx = torch.randint(0, len(data), (batch_size,), device=device, generator=gen)
        return augment(inputs[idx].float(), [depth[idx], labels[idx].long()], gen)

    def loss(outputs, targets):
        (pred, seg), (d, y) = outputs, targets
        return {'log-depth L1': (torch.log(pred[:, 0]) - torch.log(d)).abs().mean(),
                '0.5 seg CE': 0.5 * F.cross_entropy(seg, y)}

    steps_done, seconds = optimize(model, batch, loss, steps=steps, lr=lr, device=device,
                                   time_limit=time_limit, log=log, progress_stream=progress_stream)
    model = model.to('cpu', memory_format=torch.contiguous_format).eval()
    return model, steps_done, seconds


def _table(results: dict, baseline_depth: float, frames: int, seed: int) -> str:
    lines = [f'held-out: {frames} frames of seed {seed}, at the model input size, every pixel',
             f"{'':34s}{'RMSE m':>8s}{'AbsRel':>8s}{'d<1.25':>8s}{'mIoU':>8s}"]
    rows = (('student', 'student'), (f'constant {baseline_depth:.2f} m (train median)', 'baseline'))
    for name, key in rows:
        r = results[key]
        miou = f"{r['miou']:8.3f}" if 'miou' in r else f"{'-':>8s}"
        lines.append(f"{name:34s}{r['rmse']:8.3f}{r['absrel']:8.3f}{r['delta1']:8.3f}{miou}")
    return '\n'.join(lines)


def _evaluate_checkpoint(path: str, seed: int, frames: int, workers: int) -> int:
    from rc_offline.checkpoint import CheckpointError, read_checkpoint
    try:
        ckpt = read_checkpoint(path)
        model = ckpt.build()
    except CheckpointError as exc:
        print(f'train_student: error: {exc}', file=sys.stderr)
        return 1
    if seed == ckpt.extra.get('data_seed'):
        print(f'train_student: error: --heldout-seed {seed} is the seed {path} was trained on',
              file=sys.stderr)
        return 2
    baseline_depth = float(ckpt.extra.get('baseline_depth_m', 1.0))
    started = time.perf_counter()
    data = render_set(seed, frames, ckpt.spec, workers)
    rendered = time.perf_counter()
    results = evaluate(model, data, baseline_depth)
    done = time.perf_counter()
    print(f"{path}: {ckpt.extra.get('steps', '?')} steps on {ckpt.extra.get('frames', '?')} frames of seed "
          f"{ckpt.extra.get('data_seed', '?')}; rendering {rendered - started:.1f} s, inference "
          f'{1000 * (done - rendered) / frames:.0f} ms/frame (CPU, PyTorch)')
    print(_table(results, baseline_depth, frames, seed))
    print(json.dumps({'checkpoint': str(path), 'heldout_seed': seed, 'heldout_frames': frames,
                      **{f'{k}_{m}': v for k, r in results.items() for m, v in r.items()}}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog='train_student', description=main.__doc__,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='models/student_demo.pt', help='checkpoint to write')
    parser.add_argument('--steps', type=int, default=3000, help='optimizer steps')
    parser.add_argument('--frames', type=int, default=2000, help='training frames to render')
    parser.add_argument('--seed', type=int, default=1, help='training data seed (and torch seed)')
    parser.add_argument('--heldout-frames', type=int, default=64, help='held-out frames to evaluate on')
    parser.add_argument('--heldout-seed', type=int, default=HELDOUT_SEED, help='held-out data seed')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--batch-size', type=int, default=16, help='frames per step')
    parser.add_argument('--lr', type=float, default=2e-3, help='peak AdamW learning rate')
    parser.add_argument('--base-channels', type=int, default=16, help='StudentConfig.base_channels')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help='processes rendering the frames')
    parser.add_argument('--time-limit', type=float, default=None,
                        help='seconds of training at most (the schedule is compressed to fit)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch decides)')
    parser.add_argument('--evaluate', metavar='CHECKPOINT', default=None,
                        help='train nothing: evaluate CHECKPOINT on --heldout-frames frames of '
                             '--heldout-seed against the constant baseline stored in it (its training '
                             "set's median depth)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train the demo student (depth + segmentation) on synthetic scenes and save a checkpoint."""
    args = build_parser().parse_args(argv)
    return run_tool('train_student', lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    problems = [f'--{name.replace("_", "-")} must be >= 1' for name in
                ('steps', 'frames', 'heldout_frames', 'batch_size', 'workers') if getattr(args, name) < 1]
    if args.seed == args.heldout_seed and not args.evaluate:
        problems.append('--seed and --heldout-seed must differ (held-out frames must be unseen)')
    if problems:
        raise UsageError('; '.join(problems))
    torch = require('torch', 'training', 'pip install -r requirements/torch.txt')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise ToolError(f'--device {args.device} but torch sees no CUDA device')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.evaluate:
        return _evaluate_checkpoint(args.evaluate, args.heldout_seed, args.heldout_frames, args.workers)
    spec = DEMO_SPEC
    t0 = time.perf_counter()
    print(f'rendering {args.frames} training frames (seed {args.seed}) and {args.heldout_frames} held-out '
          f'frames (seed {args.heldout_seed}) with {args.workers} worker(s)', flush=True)
    data = render_set(args.seed, args.frames, spec, args.workers, progress=True)
    heldout = render_set(args.heldout_seed, args.heldout_frames, spec, args.workers)
    render_seconds = time.perf_counter() - t0
    baseline_depth = float(np.median(data.depth[:, ::4, ::4]))
    print(f'rendered in {render_seconds:.0f} s; training median depth {baseline_depth:.3f} m', flush=True)
    model, steps, seconds = train(data, spec, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                  device=args.device, base_channels=args.base_channels, seed=args.seed,
                                  time_limit=args.time_limit, log=lambda s: print(s, flush=True),
                                  progress_stream=sys.stdout)
    results = evaluate(model, heldout, baseline_depth)
    print(_table(results, baseline_depth, args.heldout_frames, args.heldout_seed))
    _save(args, model, spec, results, baseline_depth, {'steps': steps, 'train_seconds': round(seconds, 1),
                                                       'render_seconds': round(render_seconds, 1),
                                                       'torch': str(torch.__version__)})
    return 0


def _save(args: argparse.Namespace, model, spec, results: dict, baseline_depth: float, run: dict) -> None:
    """The checkpoint with its provenance, one line about it, and the JSON summary."""
    from rc_offline.checkpoint import save_checkpoint
    from rc_offline.model import count_parameters
    extra = {
        'trained_by': 'rc_offline.train', **run, 'batch_size': args.batch_size, 'lr': args.lr,
        'data_seed': args.seed, 'frames': args.frames, 'heldout_seed': args.heldout_seed,
        'heldout_frames': args.heldout_frames, 'device': args.device, 'parameters': count_parameters(model),
        'targets': 'depth and labels rendered at 240x320 with scaled intrinsics (scenes.training_sample)',
        'baseline_depth_m': baseline_depth, 'metrics': results,
    }
    save_checkpoint(args.out, model, spec, extra=extra)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {run['steps']} steps, {run['train_seconds']:.0f} s "
          'training)')
    print(json.dumps({'checkpoint': str(args.out), 'bytes': size, 'steps': run['steps'],
                      'train_seconds': run['train_seconds'], 'baseline_depth_m': baseline_depth,
                      **{f'{k}_{m}': v for k, r in results.items() for m, v in r.items()}}))


if __name__ == '__main__':
    sys.exit(main())
