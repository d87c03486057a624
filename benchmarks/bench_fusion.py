#!/usr/bin/env python3
"""Per-frame cost of depth fusion (depth_fusion.fusion.Fuser) for each mode, at 240x320 and 480x640.

Beside each figure: the time of one copy of the output array (np.copyto into a preallocated array of the
same size: the memory-bound floor) measured in the same run, and the ratio to it. Layouts:
  f32     ToF 32FC1 metres on the output grid, mono8 confidence
  mm      ToF 16UC1 millimetres on the output grid, mono8 confidence
  demo    ToF 16UC1 at twice the output size (640x480 ToF -> 320x240 student grid), mono8 confidence
  speckle f32 with salt-and-pepper ToF dropouts (50%): the worst case for masked copies
The frames are synthetic but shaped like real ones: smooth depth, coherent ToF holes (beyond range, dark
patches), 1% scattered dropouts, an affine error on the student. ``naive`` is the straightforward numpy
version of gated fusion (to_metres + np.where, fresh arrays every frame) for comparison. A second table
times the ToF / student selection alone (whole 480x640 frame): the bit-pattern blend against
np.copyto(where=) and np.where, on the f32 and speckle masks.

Prints a table (median and p90 milliseconds per frame) and, as the last line, a JSON object.
Usage: python benchmarks/bench_fusion.py [--iterations N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from depth_fusion.fusion import MODES, Fuser, FusionConfig, _blend, tof_valid
from rc_perception.depth import to_metres

SIZES = ((240, 320), (480, 640))


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
    source = np.where(valid, 1, np.where(np.isnan(out), 0, 2)).astype(np.uint8)
    return out, source


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


def selection_times(student, tof_m, mask, iterations: int) -> dict:
    """``tof_m where mask else student`` three ways, whole frame."""
    out = np.empty_like(student)
    diff = np.empty(student.shape, np.uint32)

    def masked_copy():
        np.copyto(out, student)
        np.copyto(out, tof_m, where=mask)

    return {'blend': timeit(lambda: _blend(out, student, tof_m, mask, diff), iterations),
            'copyto_where': timeit(masked_copy, iterations),
            'np_where': timeit(lambda: np.where(mask, tof_m, student), iterations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=300)
    args = parser.parse_args()
    base = dict(range_min=0.2, range_max=4.0, confidence_threshold=100.0, alpha=1.1, beta=-0.1,
                median_min_pixels=100, online_min_inliers=200)
    results: dict = {}
    print(f"{'output':>8} {'layout':>8} {'variant':>22} {'median ms':>10} {'p90 ms':>8} {'x copy':>7}")
    for height, width in SIZES:
        key = f'{height}x{width}'
        out = np.empty((height, width), np.float32)
        src = np.random.default_rng(1).random((height, width)).astype(np.float32)
        floor = timeit(lambda o=out, s=src: np.copyto(o, s), args.iterations)
        results[key] = {'copy_floor': floor}
        print(f"{key:>8} {'':>8} {'copy (floor)':>22} {floor['median_ms']:>10.3f} {floor['p90_ms']:>8.3f}"
              f" {1.0:>7.1f}")
        layouts = ('f32', 'mm', 'speckle') + (('demo',) if height == 240 else ())
        for layout in layouts:
            student, tof, enc, conf = frames(height, width, layout)
            variants = {}
            for mode in (MODES if layout in ('f32', 'mm', 'demo') else ('gated',)):
                for source_map in (True, False) if mode == 'gated' else (True,):
                    fuser = Fuser(FusionConfig(mode=mode, **base))
                    name = mode + ('' if source_map else ' (no source map)')
                    variants[name] = (lambda f=fuser, sm=source_map, s=student, t=tof, e=enc, c=conf:
                                      f.fuse(s, t, e, c, source_map=sm))
            if layout != 'demo':
                cfg = FusionConfig(**base)
                ref = naive_gated(student, tof, enc, conf, cfg)
                got = Fuser(cfg).fuse(student, tof, enc, conf)
                assert np.array_equal(ref[0], got.depth, equal_nan=True), 'fused depth differs from naive'
                assert np.array_equal(ref[1], got.source), 'source map differs from naive'
                assert np.array_equal(got.source == 1, tof_valid(tof, enc, 0.2, 4.0, conf, 100.0))
                variants['naive gated (np.where)'] = (lambda s=student, t=tof, e=enc, c=conf, g=cfg:
                                                      naive_gated(s, t, e, c, g))
            results[key][layout] = {}
            for name, fn in variants.items():
                r = timeit(fn, args.iterations)
                r['x_copy'] = round(r['median_ms'] / floor['median_ms'], 2)
                results[key][layout][name] = r
                print(f"{key:>8} {layout:>8} {name:>22} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f}"
                      f" {r['x_copy']:>7.1f}")
    # The ToF / student selection alone, whole frame, on each layout's real mask: the branch-free bit blend
    # that Fuser uses against numpy's masked copies, whose cost follows the mask's pattern.
    print(f"{'selection 480x640':>26} {'blend':>8} {'copyto(where)':>14} {'np.where':>9}  (median ms)")
    selection = {}
    for layout in ('f32', 'speckle'):
        student, tof, enc, conf = frames(480, 640, layout)
        mask = tof_valid(tof, enc, base['range_min'], base['range_max'], conf, base['confidence_threshold'])
        row = selection_times(student, to_metres(tof, enc), mask, args.iterations)
        selection[layout] = row
        print(f"{layout:>26} {row['blend']['median_ms']:>8.3f} {row['copyto_where']['median_ms']:>14.3f} "
              f"{row['np_where']['median_ms']:>9.3f}")
    results['selection_480x640'] = selection
    # online_affine: the fit on fit_sample_size sampled positions against the fit on every pixel.
    student, tof, enc, conf = frames(480, 640, 'mm')
    sample = {}
    print(f"{'fit on':>20} {'alpha':>8} {'beta':>8} {'inliers':>8} {'median ms':>10}")
    for label, size in (('8192 sampled pixels', 8192), ('every pixel', 0)):
        fuser = Fuser(FusionConfig(mode='online_affine', online_smoothing=0.0, fit_sample_size=size, **base))
        corr = fuser.fuse(student, tof, enc, conf).correction
        r = timeit(lambda f=fuser: f.fuse(student, tof, enc, conf), max(20, args.iterations // 5))
        sample[label] = {'alpha': round(corr.alpha, 5), 'beta': round(corr.beta, 5),
                         'inlier_share': round(corr.inlier_share, 4), 'pixels': corr.pixels, **r}
        print(f'{label:>20} {corr.alpha:>8.4f} {corr.beta:>8.4f} {corr.inlier_share:>8.3f} '
              f"{r['median_ms']:>10.3f}")
    results['online_affine_fit_480x640'] = sample
    print('(frames: student = (true depth + 0.1) / 1.1, so the exact fit is alpha 1.1, beta -0.1)')
    big = results['480x640']
    gated = big['mm']['gated']['median_ms']
    targets = {
        'gated_480x640_16UC1_ms': gated,
        'gated_480x640_32FC1_ms': big['f32']['gated']['median_ms'],
        'gated_480x640_x_copy_floor': big['mm']['gated']['x_copy'],
        'gated_at_most_1ms': gated <= 1.0,
        'gated_within_5x_copy_floor': big['mm']['gated']['x_copy'] <= 5.0,
        'online_affine_480x640_ms': big['mm']['online_affine']['median_ms'],
        'online_affine_within_10ms': big['mm']['online_affine']['median_ms'] <= 10.0,
    }
    print(json.dumps({'benchmark': 'depth_fusion', 'iterations': args.iterations,
                      'machine': platform.processor() or platform.machine(), 'numpy': np.__version__,
                      'targets': targets, 'results': results}))


if __name__ == '__main__':
    main()
