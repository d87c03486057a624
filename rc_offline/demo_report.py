"""The demo's report: metrics.json, report.md and a PNG panel per selected frame (matplotlib, no display)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from rc_perception.labels import colourize

__all__ = ['load_poses', 'quaternion_matrix', 'write_metrics', 'write_panels', 'write_report']

#: Height band (metres above the floor) that Nav2 marks as obstacles with config/nav2_local_costmap.yaml.
OBSTACLE_BAND = (0.06, 0.45)


def quaternion_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """Rotation matrix of a unit quaternion."""
    return np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ])


def load_poses(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """poses.csv of a synthetic split: stem -> (rotation optical->world, position)."""
    path = Path(folder) / 'poses.csv'
    if not path.is_file():
        return {}
    with open(path, newline='') as fh:
        return {row['stem']: (quaternion_matrix(*(float(row[k]) for k in ('qx', 'qy', 'qz', 'qw'))),
                              np.array([float(row[k]) for k in ('x', 'y', 'z')]))
                for row in csv.DictReader(fh)}


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def write_metrics(path: Path, metrics: dict) -> None:
    path.write_text(json.dumps(_clean(metrics), indent=2) + '\n')


def _fmt(value, digits: int = 3, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return 'n/a'
    if pct:
        return f'{100 * value:.1f} %'
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def write_report(path: Path, m: dict, checks: list[tuple[str, bool, str]], setup: dict,
                 class_names: tuple[str, ...], panel_files: list[str], sections: list[str] = ()) -> None:
    """report.md; ``sections`` (markdown lines, e.g. the costmap's) go after the accuracy sections."""
    truth = m.get('ground_truth', True)
    if truth:
        intro = ('The whole pipeline ran over DDS on data with ground truth (by default the built-in '
                 'synthetic held-out sequence: RGB, simulated ToF depth and confidence), replayed into '
                 '`student_trt_node`, `depth_fusion_node` and `pointcloud_xyz_node`, each its own process, '
                 'with the parameters of the params file. Accuracy is measured on the output grid against '
                 'the ground truth.')
        accuracy = ['Over the ground-truth pixels where each source gives a value; coverage is the share of '
                    'ground-truth pixels where it does.']
    else:
        intro = ('The whole pipeline ran over DDS on a recording without ground truth, replayed into '
                 '`student_trt_node`, `depth_fusion_node` and `pointcloud_xyz_node`, each its own process, '
                 'with the parameters of the params file. There is no ground truth: no error figures, only '
                 'coverage, rates, latency and the consistency of what was published.')
        accuracy = ['Coverage is the share of all output pixels where each source gives a value (ToF and '
                    'student as the published source map tells it). Errors need ground truth: n/a.']
    lines = ['# rc_perception demo report', '', intro, '',
             '## Checks', '', '| check | result | figures |', '|---|---|---|']
    lines += [f'| {name} | {"PASS" if ok else "FAIL"} | {detail} |' for name, ok, detail in checks]
    lines += ['', '## Depth', '', *accuracy, '',
              '| source | coverage | RMSE (m) | AbsRel | δ < 1.25 | pixels |',
              '|---|---:|---:|---:|---:|---:|']
    for s, name in (('student', 'student (learned)'), ('tof', 'ToF (valid and confident)'),
                    ('fused', 'fused (published)')):
        lines.append(f"| {name} | {_fmt(m[f'coverage_{s}'], pct=True)} | {_fmt(m[f'rmse_{s}'])} | "
                     f"{_fmt(m[f'absrel_{s}'])} | {_fmt(m[f'delta1_{s}'])} | {m[f'pixels_{s}']:,} |")
    if truth:
        lines += ['', '## Segmentation', '', f"mIoU **{_fmt(m['miou'])}** (pixel accuracy "
                  f"{_fmt(m['pixel_accuracy'], pct=True)}).", '', '| class | IoU |', '|---|---:|']
        lines += [f'| {n} | {_fmt(v)} |' for n, v in zip(class_names, m['iou_per_class'], strict=False)]
    lines += ['', *sections, '## Pipeline', '', '| figure | value |', '|---|---:|',
              f"| frames replayed (frames_in) | {m['frames_in']} |",
              f"| point clouds received (frames_out) | {m['frames_out']} |",
              f"| frames without a cloud (dropped) | {m['dropped']} |",
              f"| of which dropped as stale by the student (newest frame wins) | "
              f"{_fmt(m.get('student_dropped_stale'), 0)} |",
              f"| clouds per second (fps) | {_fmt(m['fps'], 2)} |",
              f"| camera stamp -> point cloud, p50 (ms) | {_fmt(m['latency_ms_p50'], 1)} |",
              f"| camera stamp -> point cloud, p99 (ms) | {_fmt(m['latency_ms_p99'], 1)} |",
              f"| student inference p50 / p99 (ms, node diagnostics) | "
              f"{_fmt(m.get('student_inference_ms_p50'), 1)} / "
              f"{_fmt(m.get('student_inference_ms_p99'), 1)} |",
              f"| frames scored | {m['frames_scored']} |",
              '', '## Set-up', '', '| | |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in setup.items()]
    if panel_files:
        lines += ['', '## Frames', '',
                  'Panels: RGB, student depth, ToF depth (black: no reading), ToF confidence, fused depth, '
                  'source (blue ToF, orange student, black none), student segmentation, and the point cloud '
                  'from above with the points Nav2 would mark as obstacles '
                  f'({OBSTACLE_BAND[0]:.2f}-{OBSTACLE_BAND[1]:.2f} m above the floor) in red.', '']
        lines += [f'![{name}]({name})' for name in panel_files]
    lines.append('')
    path.write_text('\n'.join(lines))


def _bev(ax, points: np.ndarray | None, pose) -> None:
    ax.set_title('cloud, top view')
    ax.set_facecolor('white')
    if points is None:
        ax.text(0.5, 0.5, 'no cloud', ha='center', va='center', transform=ax.transAxes)
        return
    pts = points.reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    x, z = pts[:, 0], pts[:, 2]
    if pose is not None:
        rot, pos = pose
        height = (pts @ rot.T + pos)[:, 2]
        obstacle = (height >= OBSTACLE_BAND[0]) & (height <= OBSTACLE_BAND[1])
    else:
        obstacle = np.zeros(len(pts), bool)
    step = max(1, len(pts) // 20000)
    ax.scatter(x[~obstacle][::step], z[~obstacle][::step], s=0.3, c='0.6', linewidths=0)
    ax.scatter(x[obstacle][::step], z[obstacle][::step], s=0.6, c='red', linewidths=0)
    ax.scatter([0], [0], marker='^', c='black', s=30)
    ax.set_xlim(-3, 3)
    ax.set_ylim(0, 6)
    ax.set_aspect('equal')
    ax.set_xlabel('x right (m)')
    ax.set_ylabel('z forward (m)')


def write_panels(folder: Path, rows: list[dict], num_classes: int, depth_max: float = 6.0) -> list[str]:
    """One PNG per frame in ``rows`` (dicts with rgb, student, tof_m, confidence, fused, source, cloud,
    pose, stem); returns the file names."""
    from rc_offline import figures
    plt = figures.pyplot()
    from matplotlib.colors import ListedColormap

    names = []
    source_cmap = ListedColormap(['black', '#1f77b4', '#ff7f0e'])
    for row in rows:
        fig, axes = plt.subplots(2, 4, figsize=(20, 8.4))
        axes = axes.ravel()
        depth_kw = {'cmap': 'turbo', 'vmin': 0.0, 'vmax': depth_max}
        panels = [('RGB', row['rgb'], {}),
                  ('student depth', row['student'], depth_kw),
                  ('ToF depth', None if row['tof_m'] is None else np.nan_to_num(row['tof_m'], nan=0.0),
                   depth_kw),
                  ('ToF confidence', row['confidence'], {'cmap': 'gray', 'vmin': 0, 'vmax': 255}),
                  ('fused depth', row['fused'], depth_kw),
                  ('source (ToF / student / none)', row['source'],
                   {'cmap': source_cmap, 'vmin': 0, 'vmax': 2}),
                  ('student segmentation', None if row.get('segmentation') is None
                   else colourize(row['segmentation'], num_classes), {})]
        for ax, (title, img, kw) in zip(axes[:7], panels, strict=True):
            ax.set_title(title)
            ax.axis('off')
            if img is None:
                ax.text(0.5, 0.5, 'not received', ha='center', va='center', transform=ax.transAxes)
                continue
            shown = ax.imshow(img, **kw)
            if kw.get('cmap') == 'turbo':
                fig.colorbar(shown, ax=ax, fraction=0.035, label='m')
        _bev(axes[7], row['cloud'], row['pose'])
        fig.suptitle(f"frame {row['stem']}", x=0.01, ha='left')
        fig.tight_layout()
        name = f"panel_{row['stem']}.png"
        figures.save(fig, folder / name, dpi=72)
        names.append(name)
    return names
