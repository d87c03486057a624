"""What the fusion and point-cloud settings do to the costmap Nav2 would build, on the held-out drive.

The demo's pipeline without DDS: the student (ONNX Runtime, FP32 export of models/student_demo.pt, as
student_trt_node computes it), ``depth_fusion.fusion.Fuser`` and ``pointcloud_xyz.projection.backproject``
run in this process on every frame, with config/perception.yaml's parameters except the ones swept, and
``rc_offline.costmap_eval.score_drive`` judges the clouds with config/nav2_local_costmap.yaml against the
ground truth, as ``make demo`` does (every frame reaches the cloud here; a 0.1 s latency is assumed).

    PYTHONPATH=$PWD python benchmarks/bench_costmap.py --frames 90 --modes gated,local \\
        --ground 0,0.25 --veiling 0,5 --contact 0,1 --seed 35

Prints one row per setting: obstacle recall (all, the obstacles the ToF sees, the dark block), floor and
phantom cells, the removed box's time to clear.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def student_depths(folder: Path, onnx: Path) -> list[np.ndarray]:
    """The student's published depth of every frame (the node's pre/post-processing)."""
    from rc_offline import dataset
    from student_trt.backends import open_backend
    from student_trt.geometry import frame_geometry
    from student_trt.postprocess import Postprocessor, StudentImages
    from student_trt.preprocess import Preprocessor

    backend = open_backend(str(onnx), 'onnxruntime')
    spec = backend.spec
    pre, post = Preprocessor(spec), Postprocessor(spec)
    depths = []
    for frame in dataset.frame_stems(folder, ('rgb',)):
        rgb = dataset.read_rgb(frame.paths['rgb'])
        out = backend.infer(pre(rgb, 'rgb8'))
        geometry = frame_geometry(rgb.shape[:2], (spec.height, spec.width), 'model')
        images = StudentImages.empty(*geometry.grid)
        post(out.depth, out.seg_logits, geometry, out=images)
        depths.append(images.depth.copy())
    return depths


def clouds(folder: Path, students: list[np.ndarray], fusion: dict, cloud: dict) -> dict[str, dict]:
    """stem -> {'cloud', 'source'} through the fusion and the projection with these parameters."""
    from depth_fusion.fusion import Fuser, FusionConfig
    from pointcloud_xyz.projection import CameraModel, RayGrid, backproject
    from rc_offline import dataset
    from rc_perception.camera import Intrinsics, scale_intrinsics

    cam = yaml.safe_load((folder / 'camera.yaml').read_text())
    intr = Intrinsics(cam['fx'], cam['fy'], cam['cx'], cam['cy'])
    fuser, grid, recorded = Fuser(FusionConfig.from_values(SimpleNamespace(**fusion))), RayGrid(), {}
    frames = dataset.frame_stems(folder, ('tof', 'confidence'))
    for k, (frame, student) in enumerate(zip(frames, students, strict=True)):
        res = fuser.fuse(student, dataset.read_image(frame.paths['tof']), '16UC1',
                         dataset.read_image(frame.paths['confidence']), stamp_ns=k * 66_666_667)
        h, w = res.depth.shape
        rays = grid.rays(CameraModel(scale_intrinsics(intr, (cam['width'], cam['height']), (w, h))), w, h)
        points = backproject(res.depth, '32FC1', rays, range_min=cloud['range_min'],
                             range_max=cloud['range_max'], veiling_angle=cloud['veiling_min_angle'],
                             veiling_window=cloud['veiling_window'])
        recorded[frame.stem] = {'cloud': points.copy(), 'source': res.source.copy()}
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition('\n\n')[0])
    parser.add_argument('--frames', type=int, default=90, help='held-out frames (default 90)')
    parser.add_argument('--modes', default='gated,local', help='fusion modes, comma-separated')
    parser.add_argument('--ground', default='0,0.25', help='ground_tolerance values, comma-separated')
    parser.add_argument('--veiling', default='0,5', help='veiling_min_angle values (degrees)')
    parser.add_argument('--contact', default='0', help='ground_contact values (0/1), comma-separated')
    parser.add_argument('--seed', type=int, help='held-out drive seed (default: the demo\'s)')
    parser.add_argument('--model', help='student ONNX (default: models/student_demo.pt exported)')
    args = parser.parse_args(argv)
    try:
        grid = [args.modes.split(','), [float(v) for v in args.ground.split(',')],
                [float(v) for v in args.veiling.split(',')],
                [v in ('1', 'true') for v in args.contact.split(',')]]
    except ValueError as exc:
        print(f'bench_costmap: {exc}', file=sys.stderr)
        return 2
    from rc_offline.costmap import CostmapConfig
    from rc_offline.costmap_eval import TOPIC, DriveSplit, Variant, score_drive
    from rc_offline.demo import export_models
    from rc_offline.heldout import cache_root, ensure_split
    from rc_perception.launch_args import node_parameters

    folder = ensure_split('heldout', args.frames, seed=args.seed)
    onnx = Path(args.model) if args.model else export_models(
        REPO / 'models' / 'student_demo.pt', ensure_split('calibration', 6), cache_root(), 'fp32') / \
        'student_demo_fp32.onnx'
    students = student_depths(folder, onnx)
    params = yaml.safe_load((REPO / 'config' / 'perception.yaml').read_text())
    split = DriveSplit.load(folder)
    config = CostmapConfig.from_yaml(REPO / 'config' / 'nav2_local_costmap.yaml')
    print(f'{folder.name}, {args.frames} frames; recall: all / ToF-visible / dark block')
    print('| mode | ground_tolerance | veiling_min_angle | ground_contact | recall | ToF-visible | '
          'dark block | floor cells (worst) | phantom | cleared after |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for mode, tolerance, angle, contact in itertools.product(*grid):
        fusion = {**node_parameters(params, '/depth_fusion_node'), 'mode': mode,
                  'ground_tolerance': tolerance, 'ground_contact': contact}
        cloud = {**node_parameters(params, '/pointcloud_xyz_node'), 'veiling_min_angle': angle}
        recorded = clouds(folder, students, fusion, cloud)
        stems = sorted(recorded, key=lambda s: split.poses[s].stamp)
        published = {stem: {TOPIC: got['cloud']} for stem, got in recorded.items()}
        s = score_drive(split, [(stem, 0.1) for stem in stems], {'': Variant(config, published.__getitem__)},
                        config)['']
        visible, dark = s.recall_split()
        clear = s.clear_time()
        print(f'| {mode} | {tolerance:g} | {angle:g} | {str(contact).lower()} | {100 * s.recall:.1f} % | '
              f'{100 * visible:.1f} % | '
              f'{100 * dark:.1f} % | {s.floor} ({s.floor_worst}) | {s.phantom} | '
              f"{'never' if clear is None else f'{clear:.2f} s'} |", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
