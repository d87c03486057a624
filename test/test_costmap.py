"""rc_offline.costmap: Nav2's obstacle and voxel layers on hand-computed cases (pure numpy, no ROS).

Most cases use a 4 x 4 m window of 0.25 m cells (binary-exact, so a point on a cell border is exact), fixed
at the origin (no rolling), the robot at (0, 0) heading +x and the sensor 2.125 m to its left at (0.125,
2.125): in cell (0, 8). The sensor frame is the global frame shifted (no rotation), so a point's cell is
read off by hand: ``cell = floor(x / 0.25)``.
"""

import math

import numpy as np
import pytest

from rc_offline.costmap import (
    FREE,
    LETHAL,
    NO_INFORMATION,
    CostmapConfig,
    CostmapConfigError,
    LocalCostmap,
    trace_2d,
    trace_3d,
)

SENSOR = (0.125, 2.125, 0.5)
TOPIC = '/cloud'


def sensor_at(x: float, y: float, z: float) -> np.ndarray:
    tf = np.eye(4)
    tf[:3, 3] = x, y, z
    return tf


def params(kind: str = 'obstacle', *, source: dict | None = None, layer: dict | None = None,
           **top) -> dict:
    """A costmap params dict as a Nav2 params file holds it: one layer, one PointCloud2 source."""
    src = {'topic': TOPIC, 'data_type': 'PointCloud2', 'marking': True, 'clearing': True,
           'min_obstacle_height': -1.0, 'max_obstacle_height': 1.0, 'obstacle_max_range': 10.0,
           'raytrace_max_range': 10.0, **(source or {})}
    plugin = {'obstacle': 'nav2_costmap_2d::ObstacleLayer', 'voxel': 'nav2_costmap_2d::VoxelLayer'}[kind]
    lay = {'plugin': plugin, 'observation_sources': 'cam', 'cam': src, 'footprint_clearing_enabled': False,
           'min_obstacle_height': 0.05, 'max_obstacle_height': 0.8, **(layer or {})}
    return {'width': 4, 'height': 4, 'resolution': 0.25, 'rolling_window': False, 'plugins': ['layer'],
            'layer': lay, **top}


def costmap(kind: str = 'obstacle', distro: str = 'humble', **kwargs) -> LocalCostmap:
    return LocalCostmap(CostmapConfig.from_params(params(kind, **kwargs)), distro)


def observe(cm: LocalCostmap, world_points, sensor=SENSOR, robot=(0.0, 0.0, 0.0), topic=TOPIC, stamp=0.0):
    """One update with ``world_points`` (global frame) seen from a sensor at ``sensor`` (global frame)."""
    pts = np.asarray(world_points, np.float32).reshape(-1, 3) - np.asarray(sensor, np.float32)
    base_to_sensor = sensor_at(sensor[0] - robot[0], sensor[1] - robot[1], sensor[2])
    return cm.update(robot, {topic: pts}, base_to_sensor, stamp)


def cells(grid: np.ndarray, value: int = LETHAL) -> set[tuple[int, int]]:
    """{(mx, my)} of the cells holding ``value``."""
    my, mx = np.nonzero(grid == value)
    return set(zip(mx.tolist(), my.tolist(), strict=True))


# ------------------------------------------------------------------------------------------ Bresenham

def test_trace_2d_walks_bresenham_cells_from_start_to_end():
    # (0,0) -> (5,2): x dominant, error starts at 5 // 2 = 2 and rises by 2; y steps when it reaches 5.
    xs, ys = trace_2d(0, 0, [5], [2])
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2),
                                                                (5, 2)]
    # (5,5) -> (2,4): x falls, error 1 + 1 per step reaches 3 on the second step.
    xs, ys = trace_2d(5, 5, [2], [4])
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(5, 5), (4, 5), (3, 4), (2, 4)]
    # y dominant: (1,1) -> (2,4).
    xs, ys = trace_2d(1, 1, [2], [4])
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(1, 1), (1, 2), (2, 3), (2, 4)]
    # A ray to its own cell visits that cell only.
    xs, ys = trace_2d(3, 3, [3], [3])
    assert (xs.tolist(), ys.tolist()) == ([3], [3])


def test_trace_2d_honours_max_and_min_length_in_cells():
    xs, _ = trace_2d(0, 0, [10], [0], max_length=4)
    assert xs.tolist() == [0, 1, 2, 3, 4], 'max_length 4 on a 10-cell ray: 4 steps, 5 cells'
    xs, _ = trace_2d(0, 0, [10], [0], min_length=3)
    assert xs.tolist() == list(range(3, 11)), 'min_length 3 starts the ray 3 cells out'
    xs, _ = trace_2d(0, 0, [2], [0], min_length=3)
    assert xs.size == 0, 'a ray shorter than min_length visits nothing'


def test_trace_3d_steps_the_dominant_axis_and_starts_from_the_truncated_cell():
    # From (0.5, 0.5, 4.5) to (6.5, 0.5, 1.5): x dominant (6 steps), z falls 3: its error starts at
    # 6 // 2 = 3 and rises by 3 per step, so z steps after steps 1, 3 and 5.
    xs, ys, zs = trace_3d((0.5, 0.5, 4.5), [[6.5, 0.5, 1.5]])
    assert xs.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert ys.tolist() == [0] * 7
    assert zs.tolist() == [4, 3, 3, 2, 2, 1, 1]
    # The start is the truncated continuous point: (0.9, 0.2, 4.99) starts in voxel (0, 0, 4).
    xs, ys, zs = trace_3d((0.9, 0.2, 4.99), [[0.1, 0.7, 4.2]])
    assert (xs.tolist(), ys.tolist(), zs.tolist()) == ([0], [0], [4])


# ------------------------------------------------------------------------------------------ obstacle layer

def test_a_single_ray_clears_its_cells_and_marks_its_end():
    cm = costmap()
    grid = observe(cm, [[2.625, 2.125, 0.3]])   # 2.5 m ahead of the sensor: cell (10, 8)
    assert cells(grid) == {(10, 8)}
    # Pre-set lethal cells on the ray and beside it: the next identical observation frees the ray's cells.
    cm.layers[0].grid[8, 3:10] = LETHAL
    cm.layers[0].grid[9, 5] = LETHAL
    grid = observe(cm, [[2.625, 2.125, 0.3]])
    assert cells(grid) == {(10, 8), (5, 9)}, 'cells 3-9 of row 8 are on the ray, (5, 9) is not'


def test_a_point_on_a_cell_border_belongs_to_the_upper_cell():
    grid = observe(costmap(), [[1.75, 3.0, 0.3]])   # x = 7 * 0.25, y = 12 * 0.25 exactly
    assert cells(grid) == {(7, 12)}


def test_a_point_above_the_source_band_neither_marks_nor_clears():
    cm = costmap(source={'max_obstacle_height': 0.5})
    cm.layers[0].grid[8, 4] = LETHAL
    grid = observe(cm, [[2.625, 2.125, 0.6]])
    assert cells(grid) == {(4, 8)}, 'the point above the source band was dropped by the buffer'


def test_the_layer_band_filters_marking_only():
    # Source band down to -1 m lets a floor point (z = 0) through; the layer's 0.05 m keeps it unmarked,
    # and its ray still frees the cells before it.
    cm = costmap()
    cm.layers[0].grid[8, 4] = LETHAL
    grid = observe(cm, [[2.625, 2.125, 0.0]])
    assert cells(grid) == set()
    # A point above the layer's max (0.8) but inside the source band clears and does not mark either.
    cm.layers[0].grid[8, 4] = LETHAL
    assert cells(observe(cm, [[2.625, 2.125, 0.9]])) == set()


def test_nan_points_neither_mark_nor_clear():
    cm = costmap()
    cm.layers[0].grid[8, 4] = LETHAL
    grid = observe(cm, [[np.nan, np.nan, np.nan], [2.625, np.nan, 0.3], [np.nan, 2.125, np.nan]])
    assert cells(grid) == {(4, 8)}


def test_a_ray_leaving_the_window_clears_to_the_edge_and_marks_nothing():
    cm = costmap()
    cm.layers[0].grid[8, 10:16] = LETHAL
    grid = observe(cm, [[6.125, 2.125, 0.3]])   # 2 m beyond the east edge (x = 4 m)
    assert cells(grid) == set(), 'clipped to x = 3.999: cells 0-15 of row 8 are free, the point is outside'
    # At 45 degrees out through the north-east: clipped to x = 3.999 first, then to y = 3.999 where the
    # ray crosses y = 4 m, at x = 2.0: end cell (8, 15). Bresenham from (0, 8), error 4 + 7 per step.
    cm.layers[0].grid[:, :] = LETHAL
    grid = observe(cm, [[4.125, 6.125, 0.3]])
    assert cells(grid, FREE) == {(0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 12), (6, 13), (7, 14),
                                 (8, 15)}


def test_the_sensor_outside_the_window_neither_marks_nor_clears():
    cm = costmap()
    cm.layers[0].grid[8, 4] = LETHAL
    grid = observe(cm, [[2.625, 2.125, 0.3]], sensor=(-0.5, 2.125, 0.5))
    assert cells(grid) == {(4, 8)}


@pytest.mark.parametrize('distro,expected', [
    ('humble', {(9, 8), (9, 7), (9, 9)}),   # whole cells: int(hypot(9, 1)) = 9 <= ceil(2.25 / 0.25) = 9
    ('jazzy', {(9, 8), (9, 9)}),            # and the 2-D world distance: B is 2.338 m away
    ('kilted', {(9, 8)}),                   # the 3-D distance: C is 2.284 m away (B too far as well)
])
def test_the_marking_range_follows_the_distro(distro, expected):
    cm = costmap(distro=distro, source={'obstacle_max_range': 2.25, 'max_obstacle_height': 1.5},
                 layer={'max_obstacle_height': 1.5})
    grid = observe(cm, [[2.25, 2.125, 0.5],    # A: 2.125 m ahead, cell (9, 8): within range everywhere
                        [2.45, 1.875, 0.5],    # B: (2.325, -0.25) m, cell (9, 7)
                        [2.25, 2.375, 1.3]])   # C: (2.125, 0.25) m, 0.8 m above the sensor, cell (9, 9)
    assert cells(grid) == expected


def test_sources_mark_and_clear_by_their_flags_and_topics():
    p = params()
    p['layer']['observation_sources'] = 'cam free'
    p['layer']['free'] = {'topic': '/clearing', 'data_type': 'PointCloud2', 'marking': False,
                          'clearing': True, 'min_obstacle_height': -1.0, 'max_obstacle_height': 1.0,
                          'raytrace_max_range': 10.0}
    cm = LocalCostmap(CostmapConfig.from_params(p))
    assert cm.topics() == {'cloud', 'clearing'}
    cm.layers[0].grid[8, 4] = LETHAL
    grid = observe(cm, [[2.625, 2.125, 0.3]], topic='clearing')   # no leading slash: the same topic
    assert cells(grid) == set(), 'a clearing-only source clears the ray and marks nothing'
    grid = observe(cm, [[1.625, 2.125, 0.3]], topic='/cloud')
    assert cells(grid) == {(6, 8)}
    grid = observe(cm, [[3.125, 2.125, 0.3]], topic='/elsewhere')
    assert cells(grid) == {(6, 8)}, 'a topic no source observes changes nothing'


def test_the_newest_observation_is_reused_until_persistence_drops_it():
    cm = costmap()
    observe(cm, [[1.625, 2.125, 0.3]], stamp=0.0)
    cm.layers[0].grid[:] = FREE
    grid = cm.update((0.0, 0.0, 0.0), stamp=0.5)   # no new cloud: Nav2 applies the buffered one again
    assert cells(grid) == {(6, 8)}
    observe(cm, [[2.125, 2.125, 0.3]], stamp=1.0)  # persistence 0: only this one marks from now on
    cm.layers[0].grid[:] = FREE
    assert cells(cm.update((0.0, 0.0, 0.0), stamp=1.1)) == {(8, 8)}
    kept = costmap(source={'observation_persistence': 1.0})
    observe(kept, [[1.625, 2.125, 0.3]], stamp=0.0)
    observe(kept, [[2.125, 1.625, 0.3]], stamp=0.8)
    kept.layers[0].grid[:] = FREE
    assert cells(kept.update((0.0, 0.0, 0.0), stamp=1.0)) == {(6, 8), (8, 6)}, 'both within 1 s'
    kept.layers[0].grid[:] = FREE
    assert cells(kept.update((0.0, 0.0, 0.0), stamp=1.5)) == {(8, 6)}, 'the 1.5 s old one is dropped'


def test_the_rolling_window_follows_the_robot_in_whole_cells():
    cm = costmap(rolling_window=True)
    cm.update((0.0, 0.0, 0.0))
    # Origin: robot - (16 - 0.5) * 0.25 / 2 = -1.9375, snapped from 0 by int(-7.75) = -7 cells: -1.75.
    assert cm.origin == pytest.approx((-1.75, -1.75))
    cm.layers[0].grid[7, 3] = LETHAL    # world x in [-1.0, -0.75)
    cm.layers[0].grid[7, 0] = LETHAL    # world x in [-1.75, -1.5): leaves the window below
    cm.update((0.5, 0.0, 0.0))
    # New origin -1.4375 is int(1.25) = 1 cell on: -1.5. Same world cell, index one less; column 15 is new.
    assert cm.origin == pytest.approx((-1.5, -1.75))
    assert cells(cm.grid) == {(2, 7)}
    cm.layers[0].grid[:, 15] = LETHAL
    cm.update((5.0, 0.0, 0.0))
    assert cells(cm.grid) == set(), 'no overlap with the old window: every cell starts free'


def test_footprint_cells_are_freed():
    cm = costmap(layer={'footprint_clearing_enabled': True}, footprint_padding=0.0,
                 footprint='[[0.25, 0.25], [0.25, -0.25], [-0.25, -0.25], [-0.25, 0.25]]')
    cm.layers[0].grid[:] = LETHAL
    grid = cm.update((2.0, 2.0, 0.0))
    # Corners (2.25, 2.25) -> cell (9, 9), (1.75, 1.75) -> (7, 7): the 3 x 3 cells between them.
    assert cells(grid, FREE) == {(x, y) for x in (7, 8, 9) for y in (7, 8, 9)}
    assert cm.config.footprint_points().tolist() == [[0.25, 0.25], [0.25, -0.25], [-0.25, -0.25],
                                                     [-0.25, 0.25]]
    padded = CostmapConfig.from_params(params(footprint='[[0.3, 0.1], [-0.2, -0.1], [0.0, 0.2]]',
                                              footprint_padding=0.05))
    np.testing.assert_allclose(padded.footprint_points(), [[0.35, 0.15], [-0.25, -0.15], [0.0, 0.25]])
    round_robot = CostmapConfig.from_params(params(robot_radius=0.2, footprint_padding=0.0))
    np.testing.assert_allclose(np.hypot(*round_robot.footprint_points().T), 0.2)


# ------------------------------------------------------------------------------------------ voxel layer

VOXEL = {'z_resolution': 0.1, 'z_voxels': 10, 'origin_z': 0.0}


def test_voxel_columns_are_lethal_above_the_mark_threshold():
    cm = costmap('voxel', layer=VOXEL)
    assert cells(observe(cm, [[2.625, 2.125, 0.35]])) == {(10, 8)}
    assert cm.layers[0].voxels[8, 10] == (1 << 3) << 16 | 0xFFFF, 'voxel 3 marked (both bits), others unknown'
    strict = costmap('voxel', layer={**VOXEL, 'mark_threshold': 1})
    assert cells(observe(strict, [[2.625, 2.125, 0.35]])) == set(), 'one marked voxel is not > 1'
    assert cells(observe(strict, [[2.625, 2.125, 0.35], [2.625, 2.125, 0.65]])) == {(10, 8)}


def test_voxel_clearing_frees_a_column_only_when_no_marked_voxel_is_left():
    cm = costmap('voxel', layer=VOXEL, source={'marking': True, 'clearing': False})
    observe(cm, [[2.625, 2.125, 0.35], [2.625, 2.125, 0.65]], sensor=(0.125, 2.125, 0.35))   # voxels 3, 6
    p = params('voxel', layer=VOXEL, source={'marking': False, 'clearing': True})
    clearing = LocalCostmap(CostmapConfig.from_params(p))
    clearing.layers[0].voxels[:] = cm.layers[0].voxels
    clearing.layers[0].grid[:] = cm.layers[0].grid
    # A level ray at z = 0.35 (voxel 3) to a point 3.375 m out, pulled back by 2 cells to x = 3.0 (cell 12):
    # voxel 3 of columns 0-12 is cleared; column 10 keeps voxel 6 and stays lethal.
    grid = observe(clearing, [[3.5, 2.125, 0.35]], sensor=(0.125, 2.125, 0.35))
    assert clearing.layers[0].voxels[8, 10] >> 16 == 1 << 6
    assert cells(grid) == {(10, 8)}
    grid = observe(clearing, [[3.5, 2.125, 0.65]], sensor=(0.125, 2.125, 0.65))
    assert cells(grid) == set(), 'the level ray through voxel 6 leaves the column without marks: free'


def test_voxel_unknown_threshold_decides_free_or_unknown():
    p = params('voxel', layer={**VOXEL, 'unknown_threshold': 0}, source={'marking': False},
               track_unknown_space=True)
    for threshold, value in ((0, NO_INFORMATION), (15, FREE)):
        p['layer']['unknown_threshold'] = threshold
        cm = LocalCostmap(CostmapConfig.from_params(p))
        cm.layers[0].grid[8, :] = LETHAL    # lethal cells without marked voxels: any ray frees them
        grid = observe(cm, [[3.5, 2.125, 0.35]], sensor=(0.125, 2.125, 0.35))
        # The ray knows one voxel of columns 0-12: 15 unknown bits, compared with threshold + (16 - 10).
        assert cells(grid, value) >= {(x, 8) for x in range(13)}, f'unknown_threshold {threshold}'
        assert cells(grid) == {(13, 8), (14, 8), (15, 8)}, 'cells beyond the ray keep their cost'


@pytest.mark.parametrize('distro,marked', [('humble', {(10, 8)}), ('jazzy', set())])
def test_only_jazzy_voxel_layer_has_a_layer_level_min_height(distro, marked):
    # A floor point passes the source band (-1 m up) and marks voxel 0 on Humble, whose voxel layer checks
    # only max_obstacle_height; Jazzy's layer-level min_obstacle_height (0.05) keeps it out.
    cm = costmap('voxel', distro=distro, layer=VOXEL)
    assert cells(observe(cm, [[2.625, 2.125, 0.0]])) == marked


# ------------------------------------------------------------------------------------------ params file

def test_params_are_read_with_nav2_types():
    with pytest.raises(CostmapConfigError, match=r'resolution: Nav2 declares it as a double; write 1.0'):
        CostmapConfig.from_params(params(resolution=1))
    with pytest.raises(CostmapConfigError, match=r'width: expected int, got 3.5'):
        CostmapConfig.from_params(params(width=3.5))
    with pytest.raises(CostmapConfigError, match='cam.obstacle_max_range: Nav2 declares it as a double'):
        CostmapConfig.from_params(params(source={'obstacle_max_range': 2}))
    with pytest.raises(CostmapConfigError, match='layer.z_voxels must be 1-16'):
        CostmapConfig.from_params(params('voxel', layer={'z_voxels': 17}))


def test_unmodelled_plugins_and_sources_are_refused_and_inflation_is_left_out():
    p = params(plugins=['layer', 'inflation'])
    p['inflation'] = {'plugin': 'nav2_costmap_2d::InflationLayer', 'inflation_radius': 0.3}
    assert CostmapConfig.from_params(p).ignored == ('inflation',)
    p = params(plugins=['layer', 'static'])
    p['static'] = {'plugin': 'nav2_costmap_2d::StaticLayer'}
    with pytest.raises(CostmapConfigError, match='StaticLayer is not modelled'):
        CostmapConfig.from_params(p)
    with pytest.raises(CostmapConfigError, match='data_type LaserScan is not modelled'):
        CostmapConfig.from_params(params(source={'data_type': 'LaserScan'}))
    with pytest.raises(CostmapConfigError, match="lists 'missing'"):
        CostmapConfig.from_params(params(plugins=['missing']))
    no_plugins = params()
    del no_plugins['plugins']
    with pytest.raises(CostmapConfigError, match='no plugins list'):
        CostmapConfig.from_params(no_plugins)


def test_load_params_finds_both_params_file_layouts(tmp_path):
    import yaml
    nested = tmp_path / 'nested.yaml'
    nested.write_text(yaml.safe_dump({'local_costmap': {'local_costmap': {'ros__parameters': params()}}}))
    flat = tmp_path / 'flat.yaml'
    flat.write_text(yaml.safe_dump({'local_costmap': {'ros__parameters': params(resolution=0.5)}}))
    assert CostmapConfig.from_yaml(nested).resolution == 0.25
    assert CostmapConfig.from_yaml(flat).resolution == 0.5
    with pytest.raises(CostmapConfigError, match='no global_costmap'):
        CostmapConfig.from_yaml(flat, node='global_costmap')


def test_unknown_distro_is_refused():
    with pytest.raises(ValueError, match="distro must be one of humble, jazzy, kilted, got 'iron'"):
        LocalCostmap(CostmapConfig.from_params(params()), 'iron')
    with pytest.raises(ValueError, match='base_to_sensor'):
        LocalCostmap(CostmapConfig.from_params(params())).update((0, 0, 0), {TOPIC: np.zeros((1, 3))})
    assert math.isclose(LocalCostmap(CostmapConfig.from_params(params())).resolution, 0.25)
