"""How well the student fills the ToF's holes, measured honestly on a recording's held-out part.

The student exists to fill the pixels where the ToF is blind, and there the recording has no label. So,
within each held-out frame (``Recording.split``: the last part of the recording's time, never trained on),
square blocks of *valid* ToF are hidden from the fusion (``hide_blocks``: blocks of ``BLOCK`` pixels on the
student's grid, a hole the size of a dark object, until ``HIDDEN_SHARE`` of the frame's labels are hidden;
seeded per frame, the same blocks for every model). The fusion (``depth_fusion.fusion.Fuser``, one per
model and row, fed the held-out frames in time order as the node is) then fuses the student with what is
left of the ToF, and the fused depth inside the hidden blocks (the fill) is scored against the hidden ToF.
Figures, each an accumulation over every pixel of every frame (``rc_offline.metrics.DepthErrors``):

* ``fill``: the fused depth on the hidden blocks against the ToF that was hidden;
* ``tof``: the student (after the row's correction) on every labelled ToF pixel;
* ``holes``: the fused depth where the ToF had no label at all, against ground truth, when the recording
  has ground truth (synthetic recordings only: a robot has no truth where its ToF is blind).

Each comes with its coverage: the share of those pixels that got a depth (the fusion's trust gate withholds
the fill of a student that disagrees with the ToF; the error figures are over the pixels filled).

Rows (``ROWS``): a constant depth (the median label of the training part), and for each model

* ``student``: the student's depth as it is (fusion mode ``gated``, no floor plane, trust gate off): the
  raw fill;
* ``median``: scaled per frame by median(ToF) / median(student) over the visible ToF (no floor plane, trust
  gate off), which shows whether a global scale would have repaired the student instead of a fine-tune;
* ``fused``: the fusion with the node's defaults (``FusionConfig()``: the ``local`` correction, the floor
  plane and the trust gate; doc/fusion.md), what the robot would publish.

``write_heldout_folder`` copies the held-out part of a dataset folder (with its ground truth and poses) to a
folder of its own, so that the whole pipeline, the costmap included, can be scored on exactly that part
with and without fine-tuning: ``demo --replay FOLDER --checkpoint before.pt`` and ``... after.pt``.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from depth_fusion.fusion import Fuser, FusionConfig
from rc_offline.metrics import DepthErrors
from rc_offline.recording import LabelRule, Recording, time_split

__all__ = ['BLOCK', 'HIDDEN_SHARE', 'REGIONS', 'ROWS', 'format_table', 'hide_blocks', 'score_fill',
           'write_heldout_folder', 'write_picture']

BLOCK = 32
HIDDEN_SHARE = 0.2
REGIONS = ('fill', 'tof', 'holes')
#: Row -> fusion settings besides the label rule's range (see the module docstring).
ROWS = {'student': {'mode': 'gated', 'min_student_delta1': 0.0, 'ground_tolerance': 0.0},
        'median': {'mode': 'median', 'min_student_delta1': 0.0, 'ground_tolerance': 0.0},
        'fused': {}}
_MAX_BLOCKS = 200


def hide_blocks(valid: np.ndarray, rng: np.random.Generator, share: float = HIDDEN_SHARE,
                block: int = BLOCK) -> np.ndarray:
    """(H, W) bool: the valid pixels inside square blocks of ``block`` pixels, each centred on a random valid
    pixel, added until at least ``share`` of the valid pixels are hidden (at most 200 blocks)."""
    hidden = np.zeros(valid.shape, bool)
    ys, xs = np.nonzero(valid)
    goal = share * ys.size
    covered = 0
    for _ in range(_MAX_BLOCKS if ys.size else 0):
        if covered >= goal:
            break
        k = int(rng.integers(ys.size))
        y0, x0 = max(int(ys[k]) - block // 2, 0), max(int(xs[k]) - block // 2, 0)
        view = hidden[y0:y0 + block, x0:x0 + block]
        newly = valid[y0:y0 + block, x0:x0 + block] & ~view
        view |= newly
        covered += int(newly.sum())
    return hidden


def _summary(errors: DepthErrors) -> dict[str, float]:
    s = errors.summary()
    return {k: s[k] for k in ('rmse', 'absrel', 'delta1', 'coverage', 'pixels')}


def score_fill(heldout: Recording, predictions: dict[str, np.ndarray], constant: float,
               rule: LabelRule | None = None, seed: int = 0) -> dict:
    """Figures of the constant and of each model's ``predictions`` ((N, H, W) float32 metres on the held-out
    frames, in time order) in each row of ``ROWS`` (see module doc).

    Returns:
        {'rows': {row name: {region: {'rmse', 'absrel', 'delta1', 'coverage', 'pixels'}}}, 'frames',
        'labels', 'hidden'}; a row is 'constant' or '<model> <row>'.
    """
    rule = rule or LabelRule()
    fusers = {f'{m} {row}': (m, Fuser(FusionConfig(range_min=rule.range_min, range_max=rule.range_max,
                                                   **settings)))
              for m in predictions for row, settings in ROWS.items()}
    acc = {row: {region: DepthErrors() for region in REGIONS} for row in ['constant', *fusers]}
    labels = hidden_count = 0
    for i in range(len(heldout)):
        tof = heldout.tof[i].astype(np.float32)
        valid = np.isfinite(tof)
        hidden = hide_blocks(valid, np.random.default_rng([seed, i]))
        visible = np.where(hidden, np.float32(np.nan), tof)
        truth = None if heldout.truth is None else heldout.truth[i].astype(np.float32)
        labels += int(valid.sum())
        hidden_count += int(hidden.sum())
        outputs = {'constant': (np.full_like(tof, constant),) * 2}
        for row, (model, fuser) in fusers.items():
            student = np.ascontiguousarray(predictions[model][i], np.float32)
            result = fuser.fuse(student, visible, '32FC1', stamp_ns=int(heldout.stamps[i]))
            corrected = student * np.float32(result.correction.alpha) + np.float32(result.correction.beta)
            outputs[row] = (result.depth.copy(), corrected)
        for row, (fused, corrected) in outputs.items():
            acc[row]['fill'].add(fused, tof, hidden)
            acc[row]['tof'].add(corrected, tof)
            if truth is not None:
                acc[row]['holes'].add(fused, truth, ~valid)
    rows = {row: {region: _summary(e) for region, e in regions.items() if e.gt_pixels}
            for row, regions in acc.items()}
    return {'rows': rows, 'frames': len(heldout), 'labels': labels, 'hidden': hidden_count}


def format_table(scores: dict, title: str) -> str:
    """The figures as a text table (a column group per region present; "-" where nothing was filled)."""
    regions = [r for r in REGIONS if any(r in v for v in scores['rows'].values())]
    heads = {'fill': 'hidden blocks (the fill)', 'tof': 'all labelled ToF pixels',
             'holes': 'ToF holes vs ground truth'}
    columns = f"{'RMSE m':>9s}{'AbsRel':>8s}{'d<1.25':>8s}{'cover':>8s}"
    lines = [title, f"{'':16s}" + ''.join(f'{heads[r]:>33s}' for r in regions),
             f"{'':16s}" + columns * len(regions)]

    def cell(f: dict) -> str:
        if not f['pixels']:
            return f"{'-':>9s}{'-':>8s}{'-':>8s}{100 * f['coverage']:7.1f}%"
        return f"{f['rmse']:9.3f}{f['absrel']:8.3f}{f['delta1']:8.3f}{100 * f['coverage']:7.1f}%"

    for row, figures in scores['rows'].items():
        lines.append(f'{row:16s}' + ''.join(cell(figures[r]) for r in regions))
    return '\n'.join(lines)


def write_picture(path: str | Path, heldout: Recording, index: int, predictions: dict[str, np.ndarray],
                  mean: tuple[float, ...], std: tuple[float, ...], depth_max: float = 5.0) -> Path:
    """A PNG of held-out frame ``index``: what the student sees, the ToF label (hidden blocks outlined), each
    model's depth and its absolute error against the ToF (matplotlib, no display)."""
    from rc_offline import figures
    plt = figures.pyplot()

    rgb = heldout.inputs[index].astype(np.float32).transpose(1, 2, 0) * np.float32(std) + np.float32(mean)
    tof = heldout.tof[index].astype(np.float32)
    hidden = hide_blocks(np.isfinite(tof), np.random.default_rng([0, index]))
    models = list(predictions)
    fig, axes = plt.subplots(2, 1 + len(models), figsize=(3.4 * (1 + len(models)) + 1.2, 5.4), squeeze=False,
                             layout='constrained')
    axes[0, 0].imshow(np.clip(rgb, 0, 1))
    axes[0, 0].set_title('RGB (student input)')
    axes[1, 0].imshow(np.ma.masked_invalid(tof), cmap='turbo', vmin=0, vmax=depth_max)
    axes[1, 0].contour(hidden, levels=[0.5], colors='white', linewidths=0.8)
    axes[1, 0].set_title('ToF label (hidden blocks outlined)')
    for k, name in enumerate(models, 1):
        depth = predictions[name][index]
        image = axes[0, k].imshow(depth, cmap='turbo', vmin=0, vmax=depth_max)
        axes[0, k].set_title(f'student {name}')
        err = axes[1, k].imshow(np.ma.masked_invalid(np.abs(depth - tof)), cmap='magma', vmin=0, vmax=1.0)
        axes[1, k].contour(hidden, levels=[0.5], colors='cyan', linewidths=0.8)
        axes[1, k].set_title(f'|{name} - ToF| (m)')
    fig.colorbar(image, ax=axes[0, :].tolist(), shrink=0.9, label='depth (m)')
    fig.colorbar(err, ax=axes[1, :].tolist(), shrink=0.9, label='error (m)')
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return figures.save(fig, path, dpi=90)


def write_heldout_folder(dataset_dir: str | Path, out: str | Path, holdout: float) -> int:
    """Copy the held-out frames of a dataset folder (the same frames ``Recording.split`` holds out: the last
    ``holdout`` share, in name order) with every kind of file, ``camera.yaml`` and their ``poses.csv`` rows
    into ``out`` (hard links where the file system allows). Returns the number of frames.

    Raises:
        rc_offline.dataset.DatasetError: not a dataset folder with rgb/ and tof/.
    """
    from rc_offline.dataset import frame_stems
    src, out = Path(dataset_dir), Path(out)
    kinds = [p.name for p in sorted(src.iterdir()) if p.is_dir() and not p.name.startswith('.')]
    frames = frame_stems(src, ('rgb', 'tof'), optional=tuple(k for k in kinds if k not in ('rgb', 'tof')))
    _, held = time_split(np.arange(len(frames)), holdout)
    chosen = [f for f, keep in zip(frames, held, strict=True) if keep]
    for frame in chosen:
        for kind, path in frame.paths.items():
            target = out / kind / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    shutil.copy2(src / 'camera.yaml', out / 'camera.yaml')
    if (src / 'poses.csv').is_file():
        stems = {f.stem for f in chosen}
        with open(src / 'poses.csv', newline='') as fh, open(out / 'poses.csv', 'w', newline='') as dst:
            reader, writer = csv.reader(fh), csv.writer(dst)
            writer.writerow(next(reader))
            writer.writerows(row for row in reader if row[0] in stems)
    return len(chosen)
