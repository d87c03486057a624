"""finetune_student: teach the student the robot's own world from its recordings, with the ToF as the label.

Every frame the car records carries its own label: the ToF is valid and confident on most pixels. This tool
takes a student checkpoint and one or more recordings (rosbag2 or dataset folders, ``rc_offline.recording``:
RGB paired with the ToF by stamp, the ToF sampled on the student's grid where the fusion would trust it),
holds out the last part of each recording's time, fine-tunes on the rest and writes a checkpoint in the same
weights-only format (``export_trt --checkpoint`` takes it). Then it scores the fill on the held-out part
(``rc_offline.fill_eval``: blocks of valid ToF hidden from the fusion) before and after, beside a constant
depth, checks the segmentation on the original synthetic held-out set, prints a table (last line JSON) and
draws a before/after picture.

Depth loss (``sparse_depth_loss``): L1 of log depth over the labelled pixels only. The labels are metric (a
ToF measures metres), so the loss keeps the scale instead of discounting it as a scale-invariant loss would
(the fusion substitutes the student's metres as they are); log, because the ToF's noise and the metrics
that matter (AbsRel, delta < 1.25) are relative, so 5 cm at 0.5 m weighs what 50 cm weighs at 5 m; L1 (the
median, not the mean), because the labels that pass the confidence threshold still hold heavy-tailed errors
(lightly mixed flying pixels, multipath), which an L2 loss would chase. Pixels without a label (invalid,
out of range, low confidence) are selected out before the logarithm, so whatever they hold (0, NaN, inf, a
negative or a huge value) never reaches the loss or its gradient.

Segmentation has no labels in a recording: it is distilled from the starting model's own predictions (the
class of each pixel by the starting checkpoint, computed once on the un-augmented frames), with the
training's weight 0.5, so it keeps what it knew instead of drifting with the shared layers. Its mIoU on the
original held-out set (``rc_offline.heldout``, labelled) is reported before and after.

BatchNorm layers keep the running statistics the model came with (eval mode; their scale and shift still
learn), so the normalization does not depend on the batch size (CPU runs use batches of 8) and the network
answers at step 0 as it did before (in training mode, normalized by the robot frames' own batch statistics,
its distillation loss started at 2.0 instead of about 0). On the robot world both choices met the targets
at 3000 steps of 32 (doc/finetune.md has the figures).

Training shares ``rc_offline.train.optimize`` (AdamW, warm-up + cosine, bf16 autocast on CUDA, a progress
bar) and its augmentation (flips, brightness/colour jitter). ``--time-limit`` compresses the schedule to fit.

    finetune_student --checkpoint models/student_demo.pt --recording ~/bags/living_room --out student_home.pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from rc_offline import fill_eval
from rc_offline.cli import ArgumentParser, ToolError, UsageError, require, run_tool
from rc_offline.recording import DEFAULT_TOPICS, LabelRule, Recording, RecordingError, load_recording

__all__ = ['finetune', 'main', 'segmentation_miou', 'sparse_depth_loss']

PROG = 'finetune_student'


def sparse_depth_loss(pred, target, mask):
    """Mean |log pred - log target| over the pixels where ``mask`` is true (0 with a gradient of 0 when
    there is none); unmasked target values are never read. Tensors of one shape; ``pred`` > 0."""
    import torch
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return (torch.log(pred[mask]) - torch.log(target[mask].to(pred.dtype))).abs().mean()


def finetune(model, inputs: np.ndarray, labels: np.ndarray, *, steps: int, batch_size: int, lr: float,
             device: str = 'cpu', seed: int = 0, time_limit: float | None = None, log=print,
             progress_stream=None):
    """Fine-tune ``model`` in place on (N, 3, H, W) float16 ``inputs`` and (N, H, W) ToF ``labels`` (metres,
    NaN without a label), segmentation distilled from the model's own starting predictions, BatchNorm
    statistics kept (see the module docstring).

    Returns:
        (the model in eval mode on the CPU, steps done, seconds).
    """
    import torch
    from torch.nn import functional as F

    from rc_offline.train import augment, optimize, predict

    torch.manual_seed(seed)
    model = model.to(device)
    own_classes = torch.from_numpy(predict(model, inputs, device)[1]).to(device)
    x_all = torch.from_numpy(inputs).to(device)
    d_all = torch.from_numpy(labels).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)

    def batch():
        idx = torch.randint(0, len(inputs), (batch_size,), device=device, generator=gen)
        return augment(x_all[idx].float(), [d_all[idx].float(), own_classes[idx].long()], gen)

    def loss(outputs, targets):
        (pred, seg), (d, y) = outputs, targets
        return {'log-depth L1 (ToF)': sparse_depth_loss(pred[:, 0], d, torch.isfinite(d)),
                '0.5 seg CE (own classes)': 0.5 * F.cross_entropy(seg, y)}

    steps_done, seconds = optimize(model, batch, loss, steps=steps, lr=lr, device=device,
                                   time_limit=time_limit, log=log, progress_stream=progress_stream,
                                   freeze_batchnorm=True)
    return model.to('cpu').eval(), steps_done, seconds


def segmentation_miou(models: dict, spec, frames: int = 90, device: str = 'cpu') -> dict[str, float]:
    """mIoU of each model on the first ``frames`` frames of the built-in labelled held-out sequence
    (``rc_offline.heldout.ensure_split('heldout', frames)``), ground truth sampled on the model grid as the
    benchmark samples it."""
    from rc_offline import heldout
    from rc_offline.dataset import frame_stems, read_rgb
    from rc_offline.evaluation import IGNORE_LABEL, ground_truth_on_grid, read_labels
    from rc_offline.metrics import ConfusionMatrix
    from rc_offline.train import predict
    from student_trt.preprocess import Preprocessor

    folder = heldout.ensure_split('heldout', frames)
    pre = Preprocessor(spec)
    stems = frame_stems(folder, ('rgb', 'labels'))
    x = np.concatenate([pre(read_rgb(f.paths['rgb'])) for f in stems])
    truth = [ground_truth_on_grid(read_labels(f.paths['labels']), spec.height, spec.width) for f in stems]
    out = {}
    for name, model in models.items():
        classes = predict(model.to(device), x, device)[1]
        confusion = ConfusionMatrix(spec.num_classes)
        for p, g in zip(classes, truth, strict=True):
            confusion.add(p, g, IGNORE_LABEL)
        out[name] = confusion.miou()
    return out


# ------------------------------------------------------------------------------------------------- CLI

def _read(args, spec, rule: LabelRule) -> list[tuple[Recording, Recording]]:
    """(training part, held-out part) of each recording."""
    topics = {'rgb': args.rgb_topic, 'depth': args.depth_topic, 'confidence': args.confidence_topic}
    parts = []
    for path in args.recording:
        started = time.perf_counter()
        rec = load_recording(path, spec, rule, topics, args.max_time_diff, args.every, _ReadProgress(path))
        train_mask, held_mask = rec.split(args.holdout)
        if train_mask.sum() < 1 or held_mask.sum() < 1:
            raise ToolError(f'{path}: {len(rec)} paired frame(s) cannot be split into a training part and '
                              f'a held-out part of {args.holdout:.0%} of the time')
        print(f'{path}: {len(rec)} paired frames, {100 * float(np.isfinite(rec.tof).mean()):.1f} % of pixels '
              f'labelled; training on {int(train_mask.sum())}, holding out the last {int(held_mask.sum())}; '
              f'read in {time.perf_counter() - started:.0f} s' + ''.join(f'; {note}' for note in rec.notes),
              flush=True)
        parts.append((rec.subset(train_mask), rec.subset(held_mask)))
    return parts


class _ReadProgress:
    """Prints a line every 100 camera frames read."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f'  {self.path}: {done}/{total} camera frames read', flush=True)


def _check_not_trained_on(ckpt, args) -> None:
    """--evaluate: refuse a held-out share reaching into frames the checkpoint was fine-tuned on."""
    done = ckpt.extra.get('finetune') or {}
    trained = {str(Path(p).resolve()) for p in done.get('recordings', [])}
    overlap = [p for p in args.recording if str(Path(p).resolve()) in trained]
    if overlap and args.holdout > done.get('holdout', 1.0) + 1e-9:
        raise UsageError(f"{args.evaluate} was fine-tuned on all but the last {done['holdout']:.0%} of "
                          f"{overlap[0]}: --holdout {args.holdout} would score frames it was trained on")


def _train(args, start, parts) -> tuple[object, dict]:
    import torch

    from rc_offline.checkpoint import save_checkpoint
    from rc_offline.model import count_parameters

    inputs = np.concatenate([t.inputs for t, _ in parts])
    labels = np.concatenate([t.tof for t, _ in parts])
    print(f'fine-tuning on {len(inputs)} frames: {args.steps} steps of {args.batch_size} on {args.device}'
          + (f', at most {args.time_limit:.0f} s' if args.time_limit else ''), flush=True)
    model, steps, seconds = finetune(start.build(), inputs, labels, steps=args.steps,
                                     batch_size=args.batch_size, lr=args.lr, device=args.device,
                                     seed=args.seed, time_limit=args.time_limit,
                                     log=lambda line: print(line, flush=True), progress_stream=sys.stdout)
    provenance = {
        'trained_by': 'rc_offline.finetune', 'steps': steps, 'batch_size': args.batch_size, 'lr': args.lr,
        'device': args.device, 'train_seconds': round(seconds, 1), 'frames': int(len(inputs)),
        'torch': str(torch.__version__), 'parameters': count_parameters(model),
        'finetune': {
            'from': str(args.checkpoint), 'from_steps': start.extra.get('steps'),
            'from_sha256': hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest(),
            'recordings': [str(Path(p).resolve()) for p in args.recording], 'holdout': args.holdout,
            'every': args.every, 'confidence_threshold': args.confidence_threshold,
            'range': [args.range_min, args.range_max]},
    }
    save_checkpoint(args.out, model, start.spec, extra=provenance)
    print(f'wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB) after {steps} steps in '
          f'{seconds:.0f} s ({seconds / max(steps, 1):.2f} s/step)', flush=True)
    return model, provenance


def _score(args, spec, before, after, parts, constant: float) -> dict:
    from rc_offline.train import predict
    rule = LabelRule(args.range_min, args.range_max, args.confidence_threshold)
    held = [h for _, h in parts]
    summary = {}
    for k, h in enumerate(held):
        predictions = {name: predict(m.to(args.device), h.inputs, args.device)[0]
                       for name, m in (('before', before), ('after', after))}
        scores = fill_eval.score_fill(h, predictions, constant, rule)
        title = (f'{h.name}: held-out last {args.holdout:.0%}: {scores["frames"]} frames, '
                 f'{scores["labels"]:,} labelled ToF pixels, {scores["hidden"]:,} of them hidden in blocks '
                 f'of {fill_eval.BLOCK}x{fill_eval.BLOCK} (student grid {spec.width}x{spec.height})')
        print(fill_eval.format_table(scores, title))
        if args.picture:
            picture = Path(args.picture) if len(held) == 1 else Path(args.picture).with_stem(
                f'{Path(args.picture).stem}_{k}')
            fill_eval.write_picture(picture, h, len(h) // 2, predictions, spec.mean, spec.std)
            print(f'picture: {picture}')
        for row, regions in scores['rows'].items():
            for region, figures in regions.items():
                for metric in ('rmse', 'absrel', 'delta1', 'coverage'):
                    summary[f"{k}_{row.replace(' ', '_')}_{region}_{metric}"] = figures[metric]
    return summary


def _parser() -> ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = ArgumentParser(prog=PROG, description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('--checkpoint', required=True, help='the student to start from (rc_offline.checkpoint format)')
    add('--recording', required=True, action='append',
        help='rosbag2 (folder, .mcap or .db3) or dataset folder (rgb/, tof/, confidence/); repeatable')
    add('--out', help='fine-tuned checkpoint to write (required unless --evaluate)')
    add('--evaluate', metavar='CHECKPOINT',
        help='train nothing: score CHECKPOINT against --checkpoint on the held-out parts')
    add('--holdout', type=float, default=0.2,
        help="last share of each recording's time held out (default 0.2)")
    add('--every', type=int, default=1, help='use every N-th paired frame (default 1: all)')
    add('--steps', type=int, default=2000, help='optimizer steps (default 2000)')
    add('--batch-size', type=int, default=16, help='frames per step (default 16)')
    add('--lr', type=float, default=5e-4, help='peak AdamW learning rate (default 5e-4)')
    add('--time-limit', type=float, help='seconds of training at most; the schedule is compressed to fit '
        '(on a 2-core CPU: --time-limit 2400 --batch-size 8, see doc/finetune.md)')
    add('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N' (default cpu)")
    add('--threads', type=int, help='torch CPU threads (default: torch decides)')
    add('--seed', type=int, default=0, help='torch seed of sampling and augmentation (default 0)')
    add('--confidence-threshold', type=float, default=50.0,
        help='ToF confidence a label needs, in the image\'s units (default 50, the fusion\'s)')
    add('--range-min', type=float, default=0.1, help='nearest ToF label in metres (default 0.1)')
    add('--range-max', type=float, default=4.0, help='farthest ToF label in metres (default 4.0)')
    add('--max-time-diff', type=float, default=0.02, help='largest RGB-ToF stamp difference paired, seconds '
        '(bags; default 0.02)')
    add('--rgb-topic', default=DEFAULT_TOPICS['rgb'], help='RGB topic in the bag')
    add('--depth-topic', default=DEFAULT_TOPICS['depth'], help='ToF depth topic in the bag')
    add('--confidence-topic', default=DEFAULT_TOPICS['confidence'],
        help='ToF confidence topic in the bag (used when present)')
    add('--picture', help='before/after PNG of a held-out frame (default: beside --out, *_fill.png)')
    add('--miou-frames', type=int, default=90,
        help='frames of the labelled synthetic held-out set for the segmentation check (0: skip)')
    add('--heldout-folder', metavar='DIR',
        help='copy the held-out part of a dataset-folder recording to DIR, to run the whole pipeline on it '
             '(demo --replay DIR --checkpoint ...)')
    return parser


def _validate(args) -> None:
    problems = [f'--{n.replace("_", "-")} must be >= 1' for n in ('steps', 'batch_size', 'every')
                if getattr(args, n) < 1]
    if not 0.0 < args.holdout < 1.0:
        problems.append(f'--holdout must be between 0 and 1, got {args.holdout}')
    if args.miou_frames < 0 or (args.time_limit is not None and args.time_limit <= 0):
        problems.append('--miou-frames must be >= 0 and --time-limit > 0')
    if not 0.0 <= args.range_min < args.range_max:
        problems.append(f'need 0 <= --range-min < --range-max, got {args.range_min}, {args.range_max}')
    if not args.evaluate and not args.out:
        problems.append('--out is required (or --evaluate CHECKPOINT)')
    if args.heldout_folder and len(args.recording) != 1:
        problems.append('--heldout-folder takes one --recording')
    if problems:
        raise UsageError('; '.join(problems))
    if args.out and args.picture is None:
        args.picture = str(Path(args.out).with_name(Path(args.out).stem + '_fill.png'))


def run(args) -> int:
    """Read, fine-tune (unless --evaluate), score and report; see the module docstring."""
    _validate(args)
    torch = require('torch', 'fine-tuning', 'pip install -r requirements/torch.txt')

    from rc_offline.checkpoint import read_checkpoint
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UsageError(f'--device {args.device} but torch sees no CUDA device')
    if args.threads:
        torch.set_num_threads(args.threads)
    start = read_checkpoint(args.checkpoint)
    after_ckpt = read_checkpoint(args.evaluate) if args.evaluate else None
    if after_ckpt is not None:
        _check_not_trained_on(after_ckpt, args)
    spec = start.spec
    rule = LabelRule(args.range_min, args.range_max, args.confidence_threshold)
    parts = _read(args, spec, rule)
    constant = float(np.nanmedian(np.concatenate([t.tof[:, ::4, ::4].ravel() for t, _ in parts])))
    if after_ckpt is None:
        after, provenance = _train(args, start, parts)
    else:
        after, provenance = after_ckpt.build(), {}
    summary = {'checkpoint': str(args.checkpoint), 'finetuned': str(args.out or args.evaluate),
               'frames_train': int(sum(len(t) for t, _ in parts)),
               'frames_heldout': int(sum(len(h) for _, h in parts)), 'constant_m': constant,
               **{k: provenance[k] for k in ('steps', 'train_seconds') if k in provenance}}
    summary.update(_score(args, spec, start.build(), after, parts, constant))
    if args.miou_frames:
        miou = segmentation_miou({'before': start.build(), 'after': after}, spec, args.miou_frames,
                                 args.device)
        print(f'segmentation mIoU on {args.miou_frames} frames of the labelled synthetic held-out set: '
              f"before {miou['before']:.3f}, after {miou['after']:.3f} "
              f"({miou['after'] - miou['before']:+.3f})")
        summary.update({f'miou_{k}': v for k, v in miou.items()})
    if args.heldout_folder:
        n = fill_eval.write_heldout_folder(args.recording[0], args.heldout_folder, args.holdout)
        print(f'held-out part ({n} frames) copied to {args.heldout_folder}')
    # A figure without pixels (a fill the trust gate withheld everywhere) is null, not NaN: strict JSON.
    print(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                      for k, v in summary.items()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Fine-tune the student on the robot's recordings (ToF as the label) and score the fill before/after."""
    from rc_offline.checkpoint import CheckpointError
    from rc_offline.dataset import DatasetError
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args), errors=(RecordingError, DatasetError, CheckpointError, OSError))


if __name__ == '__main__':
    sys.exit(main())
