"""The shipped config/nav2_local_costmap.yaml, loaded into rc_offline.costmap, on a constructed scene.

The robot stands at the odom origin heading +x with the camera on the nominal mount (0.10 m ahead, 0.20 m
up, level). The scene is written by hand: a floor, a 0.3 m cube whose front face is 1.515 m ahead, and a
wall; points are placed in the level camera's optical frame by the REP 103 axes (optical x = -y, y = -z,
z = x), with floor and wall points hidden behind the cube left out.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from rc_offline.costmap import LETHAL, CostmapConfig, LocalCostmap, load_params
from rc_perception.mount import CameraMount

YAML = Path(__file__).resolve().parent.parent / 'config' / 'nav2_local_costmap.yaml'
TOPIC = '/perception/fused_depth_points'
CAMERA = np.array([0.10, 0.0, 0.20])
MOUNT = CameraMount(x=0.10, z=0.20)
FACE_X, HALF, TOP = 1.515, 0.145, 0.3


def to_optical(world: np.ndarray) -> np.ndarray:
    d = world - CAMERA
    return np.stack([-d[:, 1], -d[:, 2], d[:, 0]], axis=1).astype(np.float32)


def visible(points: np.ndarray, box: bool) -> np.ndarray:
    """``points`` without those the cube's front face hides from the camera."""
    if not box:
        return points
    t = (FACE_X - CAMERA[0]) / (points[:, 0] - CAMERA[0])
    y, z = t * points[:, 1], CAMERA[2] + t * (points[:, 2] - CAMERA[2])
    hidden = (points[:, 0] > FACE_X) & (np.abs(y) <= HALF) & (z >= 0) & (z <= TOP)
    return points[~hidden]


def floor(x_max: float = 3.0) -> np.ndarray:
    x, y = np.meshgrid(np.arange(0.5, x_max, 0.02), np.arange(-1.8, 1.8, 0.02))
    keep = np.abs(y) <= 0.6 * (x - CAMERA[0])   # within the camera's horizontal field of view
    return np.stack([x[keep], y[keep], np.zeros(keep.sum())], axis=1)


def face() -> np.ndarray:
    y, z = np.meshgrid(np.arange(-HALF, HALF + 1e-9, 0.01), np.arange(0.005, TOP, 0.01))
    return np.stack([np.full(y.size, FACE_X), y.ravel(), z.ravel()], axis=1)


def wall(x: float = 2.2) -> np.ndarray:
    y, z = np.meshgrid(np.arange(-1.2, 1.2, 0.02), np.arange(0.0, 1.0, 0.02))
    return np.stack([np.full(y.size, x), y.ravel(), z.ravel()], axis=1)


def scene(box: bool, background: str = 'floor') -> np.ndarray:
    parts = [floor(2.2 if background == 'wall' else 3.0)] + ([wall()] if background == 'wall' else [])
    points = visible(np.concatenate(parts), box)
    return np.concatenate([points, face()]) if box else points


def lethal_cells(cm: LocalCostmap) -> set[tuple[int, int]]:
    my, mx = np.nonzero(cm.grid == LETHAL)
    return set(zip(mx.tolist(), my.tolist(), strict=True))


def shipped(plugin: str | None = None) -> CostmapConfig:
    params = load_params(YAML)
    if plugin is not None:
        params['plugins'] = [plugin, 'inflation_layer']
    return CostmapConfig.from_params(params)


def observe(cm: LocalCostmap, world: np.ndarray, mount: CameraMount = MOUNT) -> set[tuple[int, int]]:
    cm.update((0.0, 0.0, 0.0), {TOPIC: to_optical(world)}, mount.base_to_optical())
    return lethal_cells(cm)


# Face points 0.06-0.3 m up at x = 1.515 m, y = +-0.145 m. The window origin is robot - 99.5 * 0.05 / 2 =
# -2.4875, snapped from 0 by int(-49.75) = -49 cells: -2.45. Cells: x (1.515 + 2.45) / 0.05 = 79.3, y from
# (2.45 - 0.145) / 0.05 = 46.1 to (2.45 + 0.145) / 0.05 = 51.9.
BOX_CELLS = {(79, y) for y in range(46, 52)}


def test_the_shipped_yaml_loads_as_nav2_would_read_it():
    config = shipped()
    assert [layer.name for layer in config.layers] == ['obstacle_layer']
    assert config.ignored == ('inflation_layer',)
    layer = config.layers[0]
    assert [(s.name, s.marking, s.clearing) for s in layer.sources] == [('perception', True, True),
                                                                       ('clearing', False, True)]
    assert {s.key for s in layer.sources} == {'perception/fused_depth_points', 'perception/clearing_points'}
    assert all(s.data_type == 'PointCloud2' for s in layer.sources)
    main = layer.sources[0]
    assert main.min_obstacle_height < 0.0 < layer.min_obstacle_height, \
        'floor points must pass the source band (to clear) and fail the layer band (not to mark)'
    # The ranges fit the rolling window: its origin is robot - (size - 0.5) * res / 2, snapped down by less
    # than a cell, so every edge is at least (size / 2 - 0.75) cells = 2.4625 m from the base centre; less
    # the camera's 0.10 m offset.
    edge = (config.width / config.resolution / 2 - 0.75) * config.resolution - MOUNT.x
    assert max(s.raytrace_max_range for s in layer.sources) <= edge, f'clearing beyond the window ({edge} m)'
    assert main.obstacle_max_range < main.raytrace_max_range, 'clear farther than we mark'


@pytest.mark.parametrize('distro', ['humble', 'jazzy'])
def test_the_shipped_yaml_marks_the_box_not_the_floor_and_clears_it_when_it_goes(distro):
    cm = LocalCostmap(shipped(), distro)
    assert observe(cm, scene(box=True)) == BOX_CELLS
    assert cm.origin == pytest.approx((-2.45, -2.45))
    assert observe(cm, scene(box=False)) == set(), 'the floor behind the removed box clears its cells'


@pytest.mark.parametrize('tilt_deg,marks_floor', [(1.0, False), (-1.0, False), (3.0, True)])
def test_a_tilt_within_the_tolerance_marks_no_floor(tilt_deg, marks_floor):
    # The camera really pitched nose-down by tilt_deg, the robot configured level: the floor seen through
    # the tilted camera is placed by the level mount. 1 degree raises the floor 3.5 cm at the 2 m marking
    # range (under the 6 cm band); 3 degrees raise it above 6 cm from 1.15 m on.
    real = CameraMount(x=0.10, z=0.20, pitch=math.radians(tilt_deg)).base_to_optical()
    world = floor()
    optical = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(real).T)[:, :3].astype(np.float32)
    cm = LocalCostmap(shipped())
    cm.update((0.0, 0.0, 0.0), {TOPIC: optical}, MOUNT.base_to_optical())
    assert bool(lethal_cells(cm)) == marks_floor, f'{len(lethal_cells(cm))} floor cells at {tilt_deg} deg'


def test_humble_voxel_layer_would_mark_the_floor():
    # The reason the voxel layer is not the default: the source band must reach below the floor for floor
    # points to clear, and Humble's voxel layer has no layer-level min_obstacle_height to stop them marking.
    cells = observe(LocalCostmap(shipped('voxel_layer'), 'humble'), scene(box=False))
    assert len(cells) > 100, f'expected the visible floor to be marked, got {len(cells)} cells'
    assert observe(LocalCostmap(shipped('voxel_layer'), 'jazzy'), scene(box=False)) == set()


def test_jazzy_voxel_layer_clears_a_removed_box_only_with_something_high_behind_it():
    # Floor returns behind the box pass under the camera's 0.2 m: the box's voxels above that stay marked.
    cm = LocalCostmap(shipped('voxel_layer'), 'jazzy')
    assert observe(cm, scene(box=True)) == BOX_CELLS
    assert observe(cm, scene(box=False)) >= {(79, 48), (79, 49)}, 'upper voxels left: the column stays lethal'
    # A wall 2.2 m ahead sends rays upwards through those voxels.
    cm = LocalCostmap(shipped('voxel_layer'), 'jazzy')
    assert observe(cm, scene(box=True, background='wall')) >= BOX_CELLS
    assert not observe(cm, scene(box=False, background='wall')) & BOX_CELLS
