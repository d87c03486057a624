#!/usr/bin/env python3
"""Depth fusion: per-frame cost of each mode, and (``--heldout``) how well each mode fills ToF holes.

Timing (synthetic frames shaped like real ones: smooth depth, coherent ToF holes, 1% dropouts, an affine
student error) at 240x320 and 480x640, beside the time of one copy of the output array (np.copyto into a
preallocated array: the memory-bound floor) measured in the same run. Layouts: f32 (32FC1 ToF on the output
grid, mono8 confidence), mm (16UC1), demo (16UC1 ToF at twice the output size), speckle (f32, 50 % of the
ToF dropped at random). ``numpy rule`` is the same frame through the numpy specification (the fallback
without numba); ``naive`` is to_metres + np.where with fresh arrays.

``--heldout``: the built-in held-out sequence (rc_offline.heldout, 90 frames at 15 Hz) with the demo
student's depth (models/student_demo.pt, run with torch): per mode, the RMSE against ground truth of the
pixels the student fills and of the whole fused frame, as recorded and with blanked regions (three
boxes of the ToF removed per frame); then the trust gate with the student's depth replaced by a constant,
another frame of the sequence, or the depth scaled by 2 or 0.5: how many frames until the fill is withheld.

Prints tables and, as the last line, a JSON object. Usage:
    python benchmarks/bench_fusion.py [--iterations N] [--heldout]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from depth_fusion.fusion import MODES, Fuser, FusionConfig, resample_nearest
from rc_perception.depth import to_metres

SIZES = ((240, 320), (480, 640))
BASE = dict(range_min=0.2, range_max=4.0, confidence_threshold=100.0, alpha=1.1, beta=-0.1,
            median_min_pixels=100, online_min_inliers=200, min_student_delta1=0.0)
PERIOD_NS = 66_666_667  # 15 Hz


def frames(height: int, width: int, layout: str):
    rng = np.random.default_rng(0)
    th, tw = (2 * height, 2 * width) if layout == 'demo' else (height, width)
    yy, xx = np.mgrid[:th, :tw]
    true = (0.4 + 5.0 * yy / th + 0.5 * np.sin(xx / (tw / 16))).astype(np.float32)
    tof = true * rng.normal(1.0, 0.01, true.shape).astype(np.float32)
    tof[true > 4.5] = np.nan                                                   # beyond range
    tof[(np.sin(xx / (tw / 27)) * np.sin(yy / (th / 28))) > 0.6] = np.nan      # dark / specular patches
    tof[rng.random(true.shape) < (0.5 if layout == 'speckle' else 0.01)] = np.nan
    conf = np.where(np.isnan(tof), 10, 200).astype(np.uint8)
    conf[rng.random(true.shape) < 0.01] = 50
    student = ((true[::th // height, ::tw // width] + 0.1) / 1.1).astype(np.float32)
    if layout in ('mm', 'demo'):
        return student, np.nan_to_num(np.round(tof * 1000), nan=0).astype(np.uint16), '16UC1', conf
    return student, tof, '32FC1', conf


def naive_gated(student, tof, encoding, conf, cfg):
    z = to_metres(tof, encoding, cfg.range_min, cfg.range_max)
    valid = ~np.isnan(z) & (conf >= cfg.confidence_threshold)
    s = student.copy()
    s[~(np.isfinite(s) & (s > 0))] = np.nan
    out = np.where(valid, z, s)
    return out, np.where(valid, 1, np.where(np.isnan(out), 0, 2)).astype(np.uint8)


def timeit(fn, iterations: int) -> dict:
    for _ in range(10):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1e3
    return {'median_ms': round(float(np.median(times)), 4),
            'p90_ms': round(float(np.percentile(times, 90)), 4)}


def layout_calls(student, tof, enc, conf, layout: str) -> dict:
    """The variants timed on one layout (each a call fusing the frame)."""
    modes = MODES if layout != 'speckle' else ('gated', 'local')
    fusers = {mode: Fuser(FusionConfig(mode=mode, **BASE)) for mode in modes}
    fusers['gated (numpy rule)'] = Fuser(FusionConfig(**BASE), compiled=False)
    calls = {name: (lambda f=f: f.fuse(student, tof, enc, conf)) for name, f in fusers.items()}
    if layout != 'demo':
        cfg = FusionConfig(**BASE)
        ref, got = naive_gated(student, tof, enc, conf, cfg), fusers['gated'].fuse(student, tof, enc, conf)
        assert np.array_equal(ref[0], got.depth, equal_nan=True) and np.array_equal(ref[1], got.source)
        calls['naive gated (np.where)'] = lambda: naive_gated(student, tof, enc, conf, cfg)
    return calls


def timing(iterations: int) -> dict:
    results: dict = {}
    print(f"{'output':>8} {'layout':>8} {'variant':>22} {'median ms':>10} {'p90 ms':>8} {'x copy':>7}")
    for height, width in SIZES:
        key = f'{height}x{width}'
        out = np.empty((height, width), np.float32)
        src = np.random.default_rng(1).random((height, width)).astype(np.float32)
        floor = timeit(lambda o=out, s=src: np.copyto(o, s), iterations)
        results[key] = {'copy_floor': floor}
        print(f"{key:>8} {'':>8} {'copy (floor)':>22} {floor['median_ms']:>10.3f} {floor['p90_ms']:>8.3f} "
              f"{1:>7.1f}")
        for layout in ('f32', 'mm', 'speckle') + (('demo',) if height == 240 else ()):
            results[key][layout] = {}
            for name, fn in layout_calls(*frames(height, width, layout), layout).items():
                r = timeit(fn, iterations)
                r['x_copy'] = round(r['median_ms'] / floor['median_ms'], 2)
                results[key][layout][name] = r
                print(f"{key:>8} {layout:>8} {name:>22} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f} "
                      f"{r['x_copy']:>7.1f}")
    return results


def heldout_data():
    """(student depths, ToF mm, confidences, ground truth on the student grid) of the held-out sequence."""
    import torch

    from rc_offline import dataset
    from rc_offline.checkpoint import load_checkpoint
    from rc_offline.heldout import ensure_split
    from student_trt.preprocess import Preprocessor

    folder = ensure_split('heldout', 90)
    model, spec = load_checkpoint('models/student_demo.pt')
    model.eval()
    pre = Preprocessor(spec)
    out = ([], [], [], [])
    for frame in dataset.frame_stems(folder, ('rgb', 'tof', 'confidence', 'depth')):
        with torch.no_grad():
            depth, _ = model(torch.from_numpy(pre(dataset.read_rgb(frame.paths['rgb']), 'rgb8')))
        student = depth[0, 0].numpy().astype(np.float32)
        gt = dataset.read_depth(frame.paths['depth'])
        for acc, item in zip(out, (student, dataset.read_image(frame.paths['tof']),
                                   dataset.read_image(frame.paths['confidence']),
                                   resample_nearest(gt, student.shape)), strict=True):
            acc.append(item)
    return out


def blank(tof: np.ndarray, k: int) -> np.ndarray:
    """The ToF with three 96x96 boxes removed (seeded by frame)."""
    tof = tof.copy()
    rng = np.random.default_rng(k)
    for _ in range(3):
        r, c = rng.integers(0, tof.shape[0] - 96), rng.integers(0, tof.shape[1] - 96)
        tof[r:r + 96, c:c + 96] = 0
    return tof


def rmse(values: list[np.ndarray]) -> float:
    v = np.concatenate(values)
    return float(np.sqrt(np.mean(v * v))) if v.size else float('nan')


def fill_accuracy(data) -> dict:
    students, tofs, confs, gts = data
    results = {}
    print(f"\n{'held-out, 90 frames':>22} {'ToF':>8} {'mode':>14} {'fill RMSE m':>12} {'fused RMSE m':>13} "
          f"{'filled %':>9}")
    for variant in ('as recorded', 'blanked boxes'):
        for mode in MODES:
            fuser = Fuser(FusionConfig(mode=mode, min_student_delta1=0.0))
            fill, fused, filled = [], [], 0
            for k, (s, t, c, g) in enumerate(zip(students, tofs, confs, gts, strict=True)):
                res = fuser.fuse(s, blank(t, k) if variant != 'as recorded' else t, '16UC1', c,
                                 stamp_ns=k * PERIOD_NS)
                has = np.isfinite(g)
                px = (res.source == 2) & has
                fill.append(res.depth[px] - g[px])
                fin = np.isfinite(res.depth) & has
                fused.append(res.depth[fin] - g[fin])
                filled += int(px.sum())
            r = {'fill_rmse_m': round(rmse(fill), 4), 'fused_rmse_m': round(rmse(fused), 4),
                 'filled_share': round(filled / sum(g.size for g in gts), 4)}
            results[f'{variant}/{mode}'] = r
            print(f"{'':>22} {variant:>8} {mode:>14} {r['fill_rmse_m']:>12.4f} {r['fused_rmse_m']:>13.4f} "
                  f"{100 * r['filled_share']:>9.1f}")
    return results


def gate_switch(data) -> dict:
    """Two passes of the real student, then two passes of a wrong one: frames until the fill is withheld,
    frames withheld before the switch (must be 0) and after it the frames still filled."""
    students, tofs, confs, _ = data
    n = len(students)
    wrong = {'constant': lambda k: np.full_like(students[k], np.float32(np.median(students[0]))),
             'shuffled': lambda k: students[(k + n // 2) % n],
             'scaled x2': lambda k: students[k] * np.float32(2.0),
             'scaled x0.5': lambda k: students[k] * np.float32(0.5)}
    results = {}
    print(f"\n{'trust gate (defaults)':>22} {'mode':>14} {'student':>12} {'withheld before':>16} "
          f"{'frames to off':>14} {'filled after':>13}")
    for mode in ('gated', 'online_affine'):
        for name, make in wrong.items():
            fuser = Fuser(FusionConfig(mode=mode))
            fills = []
            for k in range(4 * n):
                i = k % n
                s = students[i] if k < 2 * n else make(i)
                fills.append(fuser.fuse(s, tofs[i], '16UC1', confs[i], stamp_ns=k * PERIOD_NS).verdict.fill)
            before, after = np.array(fills[:2 * n]), np.array(fills[2 * n:])
            off = int(np.argmax(~after)) + 1 if (~after).any() else None
            r = {'withheld_before': int((~before).sum()), 'frames_to_off': off,
                 'filled_after': int(after.sum()), 'frames_after': int(after.size)}
            results[f'{mode}/{name}'] = r
            print(f"{'':>22} {mode:>14} {name:>12} {r['withheld_before']:>16} {str(off):>14} "
                  f"{r['filled_after']:>9} / {after.size}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=300)
    parser.add_argument('--heldout', action='store_true',
                        help='also score the modes on the held-out sequence')
    args = parser.parse_args()
    results = {'timing': timing(args.iterations)}
    big = results['timing']['480x640']['mm']
    targets = {
        'gated_480x640_16UC1_ms': big['gated']['median_ms'],
        'gated_480x640_x_copy_floor': big['gated']['x_copy'],
        'gated_within_3x_copy_floor': big['gated']['x_copy'] <= 3.0,
        **{f'{m}_480x640_ms': big[m]['median_ms'] for m in ('online_affine', 'local')},
        'online_and_local_within_5ms': max(big[m]['median_ms'] for m in ('online_affine', 'local')) <= 5.0,
    }
    if args.heldout:
        data = heldout_data()
        results['heldout_fill'] = fill_accuracy(data)
        results['heldout_gate'] = gate_switch(data)
    print(json.dumps({'benchmark': 'depth_fusion', 'iterations': args.iterations,
                      'machine': platform.processor() or platform.machine(), 'numpy': np.__version__,
                      'targets': targets, 'results': results}))


if __name__ == '__main__':
    main()
