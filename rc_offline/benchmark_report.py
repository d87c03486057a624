"""The benchmark's report: markdown tables and a PNG of the latency distributions, from its JSON record."""

from __future__ import annotations

import re
from pathlib import Path

from rc_offline.evaluation import na

__all__ = ['markdown_report', 'write_plot']



def _cell(value, digits: int = 2) -> str:
    """A table cell: a number with ``digits`` decimals, or the 'n/a: ...' string as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f'{value:,.{digits}f}' if digits else f'{value:,}'
    return str(value)


def _stat(latency: dict, kind: str, key: str, digits: int = 2) -> str:
    entry = latency.get(kind)
    return _cell(entry[key], digits) if isinstance(entry, dict) else _cell(entry)


def _table(head: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    lines = ['| ' + ' | '.join(head) + ' |',
             '| ' + ' | '.join('---:' if a == 'r' else '---' for a in align) + ' |']
    lines += ['| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |' for row in rows]
    return lines


def markdown_report(report: dict) -> str:
    """The markdown tables of a benchmark ``report`` (the JSON object ``main`` writes)."""
    measured = [m for m in report['models'] if m['status'] == 'measured']
    lines = _header(report) + _main_table(report, measured)
    if measured:
        lines += _class_table(measured) + _stage_table(measured)
    others = [m for m in report['models'] if m['status'] != 'measured']
    if others:
        lines += ['', '## Not measured', '']
        lines += [f"- {m['file']}: {m['status']}: {m.get('error') or m.get('skip')}" for m in others]
    return '\n'.join(lines) + '\n'


def _header(report: dict) -> list[str]:
    facts, settings = report['machine'], report['settings']
    lines = [f"# Student benchmark, {report['date']}", '']
    lines += _table(['Machine', ''], [[k.replace('_', ' '), v] for k, v in facts.items()], ['l', 'l'])
    return lines + ['', f"Settings: {settings['warmup']} warm-up runs, then {settings['iterations']} timed "
                    f"runs per measurement; backend {settings['backend']}; ONNX Runtime intra-op threads "
                    f"{settings['threads'] or 'default (one per core)'}; each model measured in a fresh "
                    'process.', '', f"Evaluation: {settings['evaluation']}", '']


_MAIN_HEAD = ['Model', 'Backend', 'Prec.', 'Input', 'Mean (ms)', 'p50', 'p90', 'p99', 'FPS',
              'Compute only p50 (ms)', 'Pre+infer+post p50 (ms)', 'Engine mem (MiB)', 'GPU mem Δ (MiB)',
              'RSS Δ (MiB)', 'RMSE (m)', 'AbsRel', 'δ<1.25', 'mIoU']
_MAIN_NOTES = [
    '- Mean/p50/p90/p99/FPS: `backend.infer` on one preprocessed frame (TensorRT: including '
    "the input's host->device and the outputs' device->host copies); FPS = 1000 / mean.",
    '- Compute only: TensorRT `execute_async_v3` + synchronize, no copies. Pre+infer+post: '
    'Preprocessor + infer + Postprocessor at the model size on the same camera frame (the '
    "node's per-frame work minus ROS message conversion).",
    '- Engine mem: device memory per TensorRT execution context. GPU mem Δ: drop of '
    'cudaMemGetInfo free memory from before loading (CUDA context made) to after the timed runs '
    '(on a Jetson CPU and GPU share memory: other processes move it too). RSS Δ: resident memory '
    'growth of the measuring process over the same span (runtime library already imported).',
    '- RMSE/AbsRel/δ<1.25 over every pixel with ground-truth depth; mIoU over the classes present '
    'in ground truth or prediction; per-class IoU below.']


def _model_row(m: dict) -> list[str]:
    lat, mem, acc = m['latency'], m['memory'], m['accuracy']
    return [m['file'], m['backend'], m['precision'], m['input'],
            _stat(lat, 'inference', 'mean_ms'), _stat(lat, 'inference', 'p50_ms'),
            _stat(lat, 'inference', 'p90_ms'), _stat(lat, 'inference', 'p99_ms'),
            _stat(lat, 'inference', 'fps', 1), _stat(lat, 'compute_only', 'p50_ms'),
            _stat(lat, 'end_to_end', 'p50_ms'), _cell(mem['engine_device_mib'], 1),
            _cell(mem['gpu_mem_delta_mib'], 1), _cell(mem['rss_delta_mib'], 1),
            _cell(acc['rmse_m'], 3), _cell(acc['absrel'], 3), _cell(acc['delta1'], 3), _cell(acc['miou'], 3)]


def _reference_row(ref: dict) -> list[str]:
    nr = 'n/r'
    return [f"{ref['model']} (reference†)", f"{ref['backend']} (Jetson Orin Nano)", ref['precision'],
            ref['input'], f"{ref['latency_ms']}†", nr, nr, nr, f"{ref['fps']}†" if ref['fps'] else nr, nr, nr,
            nr, f"{ref['gpu_mem_mb']:,} MB†", nr, f"{ref['rmse_m']}†" if ref['rmse_m'] is not None else nr,
            nr, nr, nr]


def _main_table(report: dict, measured: list[dict]) -> list[str]:
    rows = [_model_row(m) for m in measured] + [_reference_row(r) for r in report.get('reference', [])]
    lines = ['## Latency, memory, accuracy', '']
    if rows:
        lines += _table(_MAIN_HEAD, rows, ['l', 'l', 'l', 'l'] + ['r'] * (len(_MAIN_HEAD) - 4))
    else:
        lines.append('No model was measured.')
    lines += ['', *_MAIN_NOTES]
    if report.get('reference'):
        lines.append(f"- † Reference rows: from {report['reference_source']}. n/r: not reported there. "
                     + ' '.join(f"{r['model']}: {r['note']}." for r in report['reference']))
    return lines


def _class_table(measured: list[dict]) -> list[str]:
    names = list(dict.fromkeys(name for m in measured for name in m['classes']))
    head = ['Model', *names, 'mIoU', 'Pixel acc.', 'Depth coverage', 'Frames']
    rows = []
    for m in measured:
        acc = m['accuracy']
        iou = [_cell(acc['iou'].get(n, na('not a class of this model')), 3) for n in names]
        rows.append([m['file'], *iou,
                     _cell(acc['miou'], 3), _cell(acc['pixel_accuracy'], 3), _cell(acc['coverage'], 3),
                     _cell(acc['frames'], 0)])
    return ['', '## Segmentation IoU per class', '', *_table(head, rows, ['l'] + ['r'] * (len(head) - 1))]


def _stage_table(measured: list[dict]) -> list[str]:
    head = ['Model', 'Preprocess', 'Infer', 'Postprocess', 'Total', 'Total p99', 'Load (s)', 'Frame']
    rows = [[m['file'], _stat(m['latency'], 'pipeline_preprocess', 'p50_ms'),
             _stat(m['latency'], 'pipeline_infer', 'p50_ms'),
             _stat(m['latency'], 'pipeline_postprocess', 'p50_ms'),
             _stat(m['latency'], 'end_to_end', 'p50_ms'), _stat(m['latency'], 'end_to_end', 'p99_ms'),
             _cell(m['load_s'], 2), m['latency']['frame']] for m in measured]
    return ['', '## Per-frame stages (p50 ms) and loading', '',
            *_table(head, rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'])]


def write_plot(report: dict, path: str | Path) -> None:
    """A PNG of the latency distributions (box: p25-p75, line: p50, whiskers: p1-p99, triangle: mean), one
    panel per measurement, one box per model.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    from rc_offline import figures
    plt = figures.pyplot()
    # matplotlib >= 3.10 says orientation=, older ones (JetPack's apt packages) only vert=
    horizontal = {'orientation': 'horizontal'} if tuple(
        int(p) for p in re.findall(r'\d+', matplotlib.__version__)[:2]) >= (3, 10) else {'vert': False}
    measured = [m for m in report['models'] if m['status'] == 'measured']
    panels = [(kind, title) for kind, title in (
        ('inference', 'backend.infer (TensorRT: with host<->device copies)'),
        ('compute_only', 'compute only (TensorRT, no copies)'),
        ('end_to_end', 'preprocess + infer + postprocess')) if any(
        isinstance(m['latency'].get(kind), dict) for m in measured)]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(9, 1.2 + 0.55 * max(len(measured), 1)
                                                              * max(len(panels), 1) + 0.9 * len(panels)),
                             squeeze=False)
    for ax, (kind, title) in zip(axes[:, 0], panels, strict=False):
        models = [m for m in measured if isinstance(m['latency'].get(kind), dict)]
        data = [m['latency'][kind]['samples_ms'] for m in models]
        ax.boxplot(data, whis=(1, 99), showmeans=True, flierprops={'markersize': 2}, **horizontal)
        ax.set_yticks(range(1, len(models) + 1), [f"{m['file']} ({m['backend']})" for m in models],
                      fontsize=8)
        ax.invert_yaxis()  # first model on top, as in the table
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('ms (box p25-p75, line p50, whiskers p1-p99, triangle mean)', fontsize=8)
        ax.grid(axis='x', alpha=0.3)
    if not panels:
        axes[0, 0].text(0.5, 0.5, 'no model measured', ha='center', va='center')
        axes[0, 0].set_axis_off()
    facts = report['machine']
    gpu = '' if facts['gpu'].startswith('n/a') else f"; {facts['gpu'].split(' (')[0]}"
    fig.suptitle(f"Student latency, {report['date'][:10]}: {facts['cpu']}{gpu}; "
                 f"{report['settings']['iterations']} runs each"[:150], fontsize=9)
    fig.tight_layout()
    figures.save(fig, path, dpi=110)
