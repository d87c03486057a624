"""Does the fusion trust its student only while the student agrees with the ToF? The demo's trust section.

Per scored frame the demo measures, with its own numpy (``demo_eval.agreement``), the student depth
against the ToF where both have a value (AbsRel, delta1, the overlap's share of the frame) and whether
the student's fill was published (source map 2) where it could have been (ToF invalid, student finite).
Beside them, what the fusion node itself reported last on /diagnostics (its smoothed figures and verdict).

``--student-fault`` makes the student wrong on purpose, to check the trust gate:

* ``constant``: the student node runs a model whose weights are all zero (a constant depth everywhere);
* ``shuffled``: the camera images are replayed out of order against the ToF (frame i's RGB comes with
  frame i + n/2's ToF, stamp and ground truth), as a student that sees the wrong picture.

With a fault the check is that the fill is withheld within a second whenever the student disagrees with
the ToF (measured here: delta1 below the gate's ``min_student_delta1``), from the first frame on: no run of
disagreeing frames with the fill published lasts longer than a second. (A shuffled image that happens to
show nearly the same view agrees with the ToF, and rightly keeps its fill.) Without a fault, the check is
that the fill stays on for the real student.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ['FAULTS', 'TrustSection', 'constant_checkpoint', 'shuffled_split', 'trust_section']

FAULTS = ('constant', 'shuffled')
#: The fill must be withheld within this long after a faulty student's first frame.
WITHHOLD_WITHIN_S = 1.0
#: Without a fault, at least this share of the frames where a fill was possible must have it.
FILL_KEPT_SHARE = 0.95
NODE = 'depth_fusion_node'
_DIAG_KEYS = ('student delta1 (smoothed)', 'student AbsRel (smoothed)', 'student fill', 'trust')


def shuffled_split(split: Path, out: Path) -> Path:
    """A copy of the dataset folder ``split`` (symbolic links) whose ``rgb/`` frame i is frame
    ``(i + n // 2) % n``'s image; everything else (ToF, confidence, ground truth, poses) as it was."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for entry in split.iterdir():
        if entry.name != 'rgb':
            os.symlink(entry.resolve(), out / entry.name)
    files = sorted((split / 'rgb').iterdir())
    (out / 'rgb').mkdir()
    n = len(files)
    for i, target in enumerate(files):
        os.symlink(files[(i + n // 2) % n].resolve(), out / 'rgb' / target.name)
    return out


def constant_checkpoint(checkpoint: Path, out: Path) -> Path:
    """``checkpoint`` with every weight and buffer zeroed (batch-norm variances one): the model then
    predicts one depth everywhere. Written to ``out`` in the same weights-only format."""
    import torch

    from rc_offline.checkpoint import read_checkpoint, save_checkpoint
    ckpt = read_checkpoint(checkpoint)
    model = ckpt.build()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.fill_(1.0 if name.endswith('running_var') else 0.0)
    save_checkpoint(out, model, ckpt.spec, extra={'made_by': 'demo --student-fault constant'})
    return out


@dataclass
class TrustSection:
    """The figures, lines and check of the report's trust section."""

    frames: list[dict]
    node: dict[str, str]
    fault: str | None
    rate_hz: float
    min_delta1: float

    def disagreeing_fill_s(self) -> float:
        """The longest run, in seconds, of frames where the student disagreed with the ToF (delta1 below
        ``min_delta1``) and its fill was still published; from the first frame on."""
        longest = run = 0
        for f in self.frames:
            run = run + 1 if f['filled'] and f['delta1'] < self.min_delta1 else 0
            longest = max(longest, run)
        return longest / self.rate_hz

    def kept_share(self) -> float:
        possible = [f for f in self.frames if f['could_fill']]
        return float(np.mean([f['filled'] for f in possible])) if possible else float('nan')

    def check(self) -> tuple[str, bool, str]:
        if self.fault:
            run = self.disagreeing_fill_s()
            return (f'trust gate: a {self.fault} student loses its fill within {WITHHOLD_WITHIN_S:g} s',
                    run <= WITHHOLD_WITHIN_S, f'its disagreeing fill (delta1 < {self.min_delta1:g}) was '
                    f'published for at most {run:.2f} s in a row')
        share = self.kept_share()
        return ('trust gate: the real student keeps its fill', share >= FILL_KEPT_SHARE,
                f'fill published on {100 * share:.1f} % of the frames that had holes '
                f'(>= {100 * FILL_KEPT_SHARE:.0f} %)')

    def metrics(self) -> dict:
        delta1 = [f['delta1'] for f in self.frames if np.isfinite(f['delta1'])]
        return {'student_fault': self.fault or 'none',
                'student_vs_tof_delta1_median': float(np.median(delta1)) if delta1 else float('nan'),
                'student_vs_tof_delta1_min': float(np.min(delta1)) if delta1 else float('nan'),
                'fill_kept_share': self.kept_share(), 'disagreeing_fill_s': self.disagreeing_fill_s(),
                **{f'fusion_{k}': v for k, v in self.node.items()}}

    def lines(self) -> list[str]:
        name, ok, detail = self.check()
        m = self.metrics()
        lines = ['## Student trust', '',
                 "The fusion measures its student against the ToF on every frame and withholds the student's "
                 'fill while they disagree (depth_fusion.trust). Measured here independently, per scored '
                 'frame: the student against the valid ToF, and whether its fill was published.', '',
                 '| figure | value |', '|---|---:|',
                 f"| student fault | {self.fault or 'none'} |",
                 f"| student vs ToF delta1, median / lowest frame | "
                 f"{m['student_vs_tof_delta1_median']:.3f} / {m['student_vs_tof_delta1_min']:.3f} |",
                 f"| frames with the fill published (of those with holes) | "
                 f"{100 * m['fill_kept_share']:.1f} % |",
                 f"| longest run of disagreeing frames (delta1 < {self.min_delta1:g}) with the fill "
                 f"published | {m['disagreeing_fill_s']:.2f} s |",
                 *(f'| fusion node: {k} | {v} |' for k, v in self.node.items()),
                 f"| check: {name} | {'PASS' if ok else 'FAIL'}: {detail} |", '']
        rows = [f"| {f['stem']} | {f['absrel']:.3f} | {f['delta1']:.3f} | {100 * f['overlap']:.0f} % | "
                f"{'yes' if f['filled'] else ('no' if f['could_fill'] else '-')} |" for f in self.frames]
        return [*lines, '<details><summary>per frame</summary>', '',
                '| frame | AbsRel | delta1 | overlap | fill |', '|---|---:|---:|---:|---|', *rows, '',
                '</details>', '']


def trust_section(frames: list[dict], diagnostics: dict[str, dict[str, str]], fault: str | None,
                  rate_hz: float, min_delta1: float) -> TrustSection:
    """The section from the scored frames (``demo_eval`` agreement), the nodes' last /diagnostics and the
    fusion's ``min_student_delta1``."""
    node = next((values for name, values in diagnostics.items() if name.startswith(f'{NODE}:')), {})
    return TrustSection(frames, {k: node[k] for k in _DIAG_KEYS if k in node}, fault, rate_hz, min_delta1)
