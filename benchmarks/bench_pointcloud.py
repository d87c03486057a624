#!/usr/bin/env python3
"""Per-frame cost of depth -> PointCloud2 (back-projection + message fill), at 240x320 and 480x640.

Compares, in the same run and on the same frames:
  package  pointcloud_xyz.projection.backproject (cached ray grid) + codecs.xyz_to_cloud (array fill)
  naive    the same math in plain numpy: a fresh pixel grid every frame, np.stack, bytes into msg.data
  open3d   open3d.geometry.PointCloud.create_from_depth_image, when open3d is installed (reference)

Prints a table (median and p90 milliseconds per frame) and, as the last line, a JSON object.
Usage: python benchmarks/bench_pointcloud.py [--iterations N] [--dense]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from pointcloud_xyz.projection import RayGrid, backproject
from rc_perception import codecs
from rc_perception.camera import Intrinsics

SIZES = ((240, 320), (480, 640))


def frame(height: int, width: int) -> tuple[np.ndarray, Intrinsics]:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.2, 8.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.1] = np.nan
    f = 0.8 * width
    return depth, Intrinsics(f, f, width / 2 - 0.5, height / 2 - 0.5)


def package_version(depth, intr, grid, organized):
    pts = backproject(depth, '32FC1', intr, range_min=0.05, range_max=10.0, organized=organized, grid=grid)
    return codecs.xyz_to_cloud(pts)


def naive_version(depth, intr, organized):
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    z = depth.copy()
    z[~((z >= 0.05) & (z <= 10.0))] = np.nan
    pts = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=-1).astype(np.float32)
    if not organized:
        pts = pts[~np.isnan(z)]
    msg = PointCloud2(height=height if organized else 1, width=width if organized else len(pts))
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate('xyz')]
    msg.point_step, msg.row_step = 12, 12 * msg.width
    msg.data = pts.tobytes()
    return msg


def open3d_version(o3d, depth, intr):
    height, width = depth.shape
    cam = o3d.camera.PinholeCameraIntrinsic(width, height, intr.fx, intr.fy, intr.cx, intr.cy)
    img = o3d.geometry.Image(np.nan_to_num(depth))
    return o3d.geometry.PointCloud.create_from_depth_image(img, cam, depth_scale=1.0, depth_trunc=10.0)


def timeit(fn, iterations: int) -> dict:
    for _ in range(5):
        fn()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.array(times)
    return {'median_ms': round(float(np.median(arr)), 3), 'p90_ms': round(float(np.percentile(arr, 90)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=200)
    parser.add_argument('--dense', action='store_true', help='dense clouds (valid points only)')
    args = parser.parse_args()
    organized = not args.dense
    try:
        import open3d as o3d
    except ImportError:
        o3d = None

    results = {}
    print(f"{'size':>9} {'variant':>8} {'median ms':>10} {'p90 ms':>8}")
    for height, width in SIZES:
        depth, intr = frame(height, width)
        grid = RayGrid()
        np.testing.assert_allclose(  # both variants compute the same cloud
            codecs.cloud_to_xyz(package_version(depth, intr, grid, organized)),
            codecs.cloud_to_xyz(naive_version(depth, intr, organized)), rtol=1e-5, atol=1e-6)
        variants = {
            'package': lambda d=depth, i=intr, g=grid: package_version(d, i, g, organized),
            'naive': lambda d=depth, i=intr: naive_version(d, i, organized),
        }
        if o3d is not None:
            variants['open3d'] = lambda d=depth, i=intr: open3d_version(o3d, d, i)
        key = f'{height}x{width}'
        results[key] = {name: timeit(fn, args.iterations) for name, fn in variants.items()}
        for name, r in results[key].items():
            print(f"{key:>9} {name:>8} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f}")
        results[key]['speedup_vs_naive'] = round(
            results[key]['naive']['median_ms'] / results[key]['package']['median_ms'], 2)
    if o3d is None:
        print('(open3d not installed: `pip install open3d-cpu` adds it as a reference row)')
    print(json.dumps({'benchmark': 'pointcloud_xyz', 'organized': organized, 'iterations': args.iterations,
                      'machine': platform.processor() or platform.machine(), 'results': results}))


if __name__ == '__main__':
    main()
