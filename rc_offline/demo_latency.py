"""Where a camera frame's milliseconds go on the way to the point cloud: the demo's latency breakdown.

Two views of the same run:

* **per frame, at the recorder**: the demo's own node receives student/depth, perception/fused_depth and
  the cloud, and knows each frame's camera stamp, so it measures per frame camera -> student out, student
  out -> fused out, fused out -> cloud out and camera -> cloud (each including the hop to the recorder),
  with p50 and p99 over the run;
* **inside the nodes**: each node reports on /diagnostics the phases of ``rc_perception.latency`` (input
  age, wait, compute, publish, output age; p50 and p99 over its last frames). The DDS transit between two
  nodes is the next node's input age minus the previous node's output age (at p50; percentiles of a
  difference are not differences of percentiles, so transits are given at p50 only).

``LatencyBreakdown.segments`` lays the p50 phases end to end (transit, student wait / compute / publish,
transit, fusion ..., transit, cloud ...): the stacked bar of the report; they add up to the cloud node's
output age. ``dominant`` names the largest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rc_perception.latency import latency_key

__all__ = ['NODES', 'LatencyBreakdown', 'breakdown', 'write_plot']

#: (node name, short name), in pipeline order.
NODES = (('student_trt_node', 'student'), ('depth_fusion_node', 'fusion'), ('pointcloud_xyz_node', 'cloud'))
#: Recorder-side stages: (name, from key, to key); 'camera' is the frame's stamp.
FRAME_STAGES = (('camera -> student out', 'camera', 'student'), ('student -> fused out', 'student', 'fused'),
                ('fused -> cloud out', 'fused', 'cloud'), ('camera -> cloud out', 'camera', 'cloud'))
_WORK = ('wait', 'compute', 'publish')


def _diag(diagnostics: dict[str, dict[str, str]], node: str, key: str) -> float:
    for name, values in diagnostics.items():
        if name.startswith(f'{node}:') and key in values:
            try:
                return float(values[key])
            except ValueError:
                return float('nan')
    return float('nan')


@dataclass
class LatencyBreakdown:
    """The two views (see the module docstring); every figure in milliseconds, NaN where unknown."""

    #: stage name -> (p50, p99, frames measured)
    frames: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    #: node short name -> phase -> (p50, p99)
    nodes: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def transit(self, to: str) -> float:
        """p50 DDS transit into node ``to`` (from the camera for the student)."""
        names = [short for _, short in NODES]
        i = names.index(to)
        arriving = self.nodes[to]['input age'][0]
        return arriving if i == 0 else arriving - self.nodes[names[i - 1]]['output age'][0]

    def segments(self) -> list[tuple[str, float]]:
        """(label, p50 ms) end to end, in order; NaN where a node reported nothing."""
        out = []
        for _, short in NODES:
            out.append((f'DDS -> {short}', self.transit(short)))
            out += [(f'{short} {phase}', self.nodes[short][phase][0]) for phase in _WORK]
        return out

    def dominant(self) -> tuple[str, float]:
        """The largest p50 segment (label, ms); ('n/a', NaN) without figures."""
        known = [(label, ms) for label, ms in self.segments() if np.isfinite(ms)]
        return max(known, key=lambda s: s[1]) if known else ('n/a', float('nan'))

    def metrics(self) -> dict:
        out = {f'latency_{name.replace(" -> ", "_to_").replace(" ", "_")}_ms_p{q}': v
               for name, (p50, p99, _) in self.frames.items() for q, v in ((50, p50), (99, p99))}
        out.update({f'latency_{label.replace(" -> ", "_to_").replace(" ", "_")}_ms_p50': ms
                    for label, ms in self.segments()})
        label, ms = self.dominant()
        out['latency_dominant_segment'], out['latency_dominant_ms_p50'] = label, ms
        return out

    def lines(self, plot_name: str | None) -> list[str]:
        """The report's latency section (markdown)."""
        label, ms = self.dominant()
        lines = ['## Latency', '', f'The slowest segment of the pipeline (p50): **{label}**, {ms:.1f} ms.',
                 '',
                 '| per frame, at the recorder | p50 (ms) | p99 (ms) | frames |', '|---|---:|---:|---:|']
        lines += [f'| {name} | {p50:.1f} | {p99:.1f} | {n} |' for name, (p50, p99, n) in self.frames.items()]
        lines += ['', "Inside the nodes (their /diagnostics; DDS transit = the next node's input age minus "
                  "the previous node's output age, a difference of two p50s, so within about a millisecond "
                  'it can come out below 0):', '',
                  '| segment | p50 (ms) | p99 (ms) |', '|---|---:|---:|']
        for _, short in NODES:
            lines.append(f'| DDS -> {short} | {self.transit(short):.1f} | |')
            lines += [f'| {short} {phase} | {self.nodes[short][phase][0]:.1f} | '
                      f'{self.nodes[short][phase][1]:.1f} |' for phase in _WORK]
        if plot_name:
            lines += ['', f'![latency]({plot_name})']
        return [*lines, '']


def breakdown(diagnostics: dict[str, dict[str, str]], stamps: dict[str, int],
              arrivals: dict[str, dict[str, int]]) -> LatencyBreakdown:
    """The breakdown from the nodes' last /diagnostics values and the recorder's per-frame times.

    Args:
        diagnostics: DiagnosticStatus name -> {key: value} (the newest of each node).
        stamps: frame stem -> camera stamp (ns).
        arrivals: frame stem -> {'student' | 'fused' | 'cloud': arrival time at the recorder (ns)}.
    """
    result = LatencyBreakdown()
    for name, start, end in FRAME_STAGES:
        ms = [(got[end] - (stamps[stem] if start == 'camera' else got[start])) / 1e6
              for stem, got in arrivals.items() if end in got and (start == 'camera' or start in got)
              and stem in stamps]
        p50, p99 = np.percentile(ms, (50, 99)) if ms else (float('nan'),) * 2
        result.frames[name] = (float(p50), float(p99), len(ms))
    for node, short in NODES:
        result.nodes[short] = {phase: (_diag(diagnostics, node, latency_key(phase, 50)),
                                       _diag(diagnostics, node, latency_key(phase, 99)))
                               for phase in ('input age', *_WORK, 'output age')}
    return result


def write_plot(b: LatencyBreakdown, path: str | Path) -> None:
    """A small stacked bar of the p50 segments (camera stamp -> cloud published), largest labelled.

    Raises:
        ImportError: matplotlib is not installed.
    """
    from rc_offline import figures
    plt = figures.pyplot()
    segments = [(label, ms) for label, ms in b.segments() if np.isfinite(ms) and ms > 0]
    fig, ax = plt.subplots(figsize=(9, 1.4))
    left = 0.0
    colours = plt.get_cmap('tab20').colors
    for i, (label, ms) in enumerate(segments):
        ax.barh(0, ms, left=left, color=colours[i % len(colours)], edgecolor='white',
                label=f'{label} {ms:.1f}')
        left += ms
    ax.set_yticks([])
    ax.set_xlabel('ms after the camera stamp (p50 of each segment, laid end to end)', fontsize=8)
    label, ms = b.dominant()
    ax.set_title(f'where the time goes: slowest segment {label} ({ms:.1f} ms)', fontsize=9)
    ax.legend(fontsize=6.5, ncol=4, loc='upper center', bbox_to_anchor=(0.5, -0.7), frameon=False)
    figures.save(fig, path, dpi=110, bbox_inches='tight')
