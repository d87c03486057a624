"""Nav2's local costmap in numpy: the cells its obstacle and voxel layers mark and clear from point clouds.

An offline re-implementation (no rclpy; never imported by a node) of what ``nav2_costmap_2d`` does with a
``PointCloud2`` observation source, written from navigation2's documented behaviour and its source on the
humble and jazzy branches (observation_buffer.cpp, obstacle_layer.cpp, voxel_layer.cpp, costmap_2d.cpp,
costmap_2d.hpp ``raytraceLine``, nav2_voxel_grid). It reads the same params file the robot uses
(``config/nav2_local_costmap.yaml``), so a change to that file can be judged here before it reaches a robot.

Per update (``LocalCostmap.update``), as Nav2's ``updateMap`` does it:

1. **Rolling window**: the grid origin moves to ``robot - (size - 0.5) * resolution / 2`` (Nav2's
   ``getSizeInMetersX``), snapped to whole cells with C truncation (``updateOrigin``); cells that enter the
   window start at the default (free, or unknown with ``track_unknown_space``).
2. **Observation buffer** (per layer and source): the cloud is transformed into the global frame; points
   whose global z is outside the source's ``[min_obstacle_height, max_obstacle_height]`` are dropped (NaN
   fails both tests, so invalid pixels neither mark nor clear; ``inf_is_valid`` applies to laser scans
   only). With ``observation_persistence: 0`` only the newest observation is kept and re-used every update
   until a newer one comes. The sensor origin is the sensor frame's origin in the global frame.
3. **Clearing** (sources with ``clearing: true``), before marking:

   * obstacle layer: a 2-D Bresenham ray (``raytraceLine``) from the origin's cell to each point's cell,
     the endpoint clipped to the window first, at most ``ceil(raytrace_max_range / resolution)`` cells long
     and starting ``ceil(raytrace_min_range / resolution)`` cells out; every visited cell, the endpoint's
     included, becomes free. The point's height plays no part: a floor point clears the cells before it.
   * voxel layer: a 3-D ray through the voxel grid to the point pulled back by two cells (``2 *
     resolution``) and clipped to the grid's height span; visited voxels are cleared, and a column becomes
     free (or unknown, per ``unknown_threshold``) once it has at most ``mark_threshold`` marked voxels. A
     column is only freed when rays pass through all its marked voxels: a camera 0.2 m up cannot see
     through the upper voxels of a removed box from most places, so the voxel layer keeps them.
4. **Marking** (sources with ``marking: true``): the layer-level height band (``min_obstacle_height`` /
   ``max_obstacle_height`` of the layer, not the source), the marking range, then the cell is lethal
   (obstacle layer), or its voxel is marked and the column is lethal when it has more than
   ``mark_threshold`` marked voxels (voxel layer; points below ``origin_z`` mark voxel 0).
5. **Footprint clearing**: the robot's padded footprint polygon is set free in each layer's grid.
6. Layers are combined by maximum (``combination_method: 1``); an unknown layer cell leaves the master as it
   is. The inflation layer adds costs around lethal cells and marks nothing: it is not modelled.

Where Humble and Jazzy differ (``distro``; default ``humble``, the oldest target), at the branch heads read:

* the voxel layer's **layer-level ``min_obstacle_height``** exists from Jazzy on; on Humble the voxel layer
  checks only ``max_obstacle_height`` when marking, so every point that passed the source's band marks
  (a source band that reaches below the floor, needed for floor points to clear, marks the floor);
* the obstacle layer's **marking range** (backported in Dec 2025 / Jan 2026, navigation2 #5775): Humble
  compares the whole-cell distance ``int(hypot(dx_cells, dy_cells))`` with
  ``ceil(obstacle_max_range / resolution)``; Jazzy first drops points whose 2-D world distance exceeds the
  range, then applies the same cell test. ``kilted`` (and both before the backport) used the 3-D distance
  from the sensor, ``d^2 >= obstacle_max_range^2`` dropped;
* Jazzy's voxel layer pulls clipped ray ends 1e-5 inside the grid.

The voxel layer's marking range is the 3-D distance on every distro.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

__all__ = ['DISTROS', 'FREE', 'LETHAL', 'NO_INFORMATION', 'CostmapConfig', 'CostmapConfigError',
           'LayerConfig', 'LocalCostmap', 'Source', 'load_params', 'planar_pose', 'trace_2d', 'trace_3d',
           'transform_points']

FREE, LETHAL, NO_INFORMATION = 0, 254, 255
DISTROS = ('humble', 'jazzy', 'kilted')
_UINT_MAX = 2 ** 32 - 1
_LAYER_TYPES = {'ObstacleLayer': 'obstacle', 'VoxelLayer': 'voxel'}
#: Layers that add cost around lethal cells but never mark or clear from a sensor.
_COST_ONLY_TYPES = ('InflationLayer',)
#: The columns of a fresh voxel grid: the 16 low bits set = every voxel unknown (nav2_voxel_grid).
_UNKNOWN_COLUMN = np.uint32(0xFFFF)


class CostmapConfigError(ValueError):
    """A costmap params file the evaluator cannot use; the message names the key and what Nav2 expects."""


# ---------------------------------------------------------------------------------------------------------
# Configuration: the params file as Nav2 declares it (names, defaults and types)
# ---------------------------------------------------------------------------------------------------------

def _typed(params: Mapping, key: str, default, where: str):
    """``params[key]`` with Nav2's declared type (that of ``default``): rclcpp refuses an integer for a
    double parameter, so this does too."""
    if key not in params:
        return default
    value = params[key]
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        raise CostmapConfigError(f'{where}.{key}: Nav2 declares it as a double; write {value}.0, not {value} '
                                 '(an integer fails to load)')
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise CostmapConfigError(f'{where}.{key}: expected {expected.__name__}, got {value!r}')
    return value


def _read(cls, params: Mapping, where: str, **given):
    """A config dataclass from ``params``: every field not in ``given`` read with its default's type."""
    values = {f.name: _typed(params, f.name, f.default, where) for f in fields(cls)
              if f.name not in given and f.init and not isinstance(f.default, tuple)}
    return cls(**values, **given)


@dataclass(frozen=True)
class Source:
    """One observation source of a layer (``observation_sources``), with Nav2's defaults."""

    name: str
    topic: str = ''
    data_type: str = 'LaserScan'
    marking: bool = True
    clearing: bool = False
    min_obstacle_height: float = 0.0
    max_obstacle_height: float = 0.0
    obstacle_min_range: float = 0.0
    obstacle_max_range: float = 2.5
    raytrace_min_range: float = 0.0
    raytrace_max_range: float = 3.0
    observation_persistence: float = 0.0
    sensor_frame: str = ''

    @property
    def key(self) -> str:
        """The topic without a leading slash: what ``LocalCostmap.update``'s clouds are keyed by."""
        return (self.topic or self.name).lstrip('/')


@dataclass(frozen=True)
class LayerConfig:
    """An obstacle or voxel layer (``kind``) with Nav2's defaults; voxel-only fields are ignored otherwise."""

    name: str
    kind: str
    sources: tuple[Source, ...] = ()
    enabled: bool = True
    footprint_clearing_enabled: bool = True
    min_obstacle_height: float = 0.0
    max_obstacle_height: float = 2.0
    combination_method: int = 1
    origin_z: float = 0.0
    z_resolution: float = 0.2
    z_voxels: int = 10
    mark_threshold: int = 0
    unknown_threshold: int = 15


@dataclass(frozen=True)
class CostmapConfig:
    """The costmap node's parameters that decide lethal, free and unknown cells (Nav2 defaults)."""

    layers: tuple[LayerConfig, ...] = ()
    width: int = 5
    height: int = 5
    resolution: float = 0.1
    origin_x: float = 0.0
    origin_y: float = 0.0
    rolling_window: bool = False
    track_unknown_space: bool = False
    footprint: str = '[]'
    footprint_padding: float = 0.01
    robot_radius: float = 0.1
    update_frequency: float = 5.0
    #: Plugins in ``plugins`` that the evaluator leaves out (the inflation layer: costs only).
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_params(cls, params: Mapping, where: str = 'local_costmap') -> CostmapConfig:
        """From a costmap node's ``ros__parameters`` mapping.

        Raises:
            CostmapConfigError: a value of the wrong type, an unknown layer plugin, a laser-scan source, or
                no obstacle or voxel layer at all.
        """
        if 'plugins' not in params:
            raise CostmapConfigError(f'{where}: no plugins list (Nav2 would load its default static, '
                                     'obstacle and inflation layers; name the layers to evaluate)')
        layers, ignored = [], []
        for name in _typed(params, 'plugins', [], where):
            section = params.get(name)
            if not isinstance(section, Mapping) or 'plugin' not in section:
                raise CostmapConfigError(f'{where}.plugins lists {name!r}, which has no section with a '
                                         'plugin')
            kind = section['plugin'].replace('/', '::').split('::')[-1]
            if kind in _COST_ONLY_TYPES:
                ignored.append(name)
                continue
            if kind not in _LAYER_TYPES:
                raise CostmapConfigError(f'{where}.{name}: plugin {section["plugin"]} is not modelled (the '
                                         'evaluator knows ObstacleLayer, VoxelLayer and InflationLayer)')
            layers.append(_layer(name, _LAYER_TYPES[kind], section, f'{where}.{name}'))
        if not layers:
            raise CostmapConfigError(f'{where}.plugins has no ObstacleLayer or VoxelLayer')
        config = _read(cls, params, where, layers=tuple(layers), ignored=tuple(ignored))
        if config.width <= 0 or config.height <= 0 or config.resolution <= 0:
            raise CostmapConfigError(f'{where}: width, height and resolution must be positive')
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, node: str = 'local_costmap') -> CostmapConfig:
        """From a Nav2 params file (see ``load_params``)."""
        return cls.from_params(load_params(path, node), node)

    def footprint_points(self) -> np.ndarray:
        """(N, 2) padded footprint in the base frame: ``footprint``, else a 16-gon of ``robot_radius``;
        each vertex moved ``footprint_padding`` away from both axes (Nav2's ``padFootprint``)."""
        try:
            points = np.asarray(json.loads(self.footprint), np.float64).reshape(-1, 2)
        except (ValueError, TypeError) as exc:
            raise CostmapConfigError(f'footprint {self.footprint!r} is not a list of [x, y] pairs') from exc
        if len(points) == 0:
            angle = np.arange(16) * (2 * math.pi / 16)
            points = self.robot_radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return points + np.sign(points) * self.footprint_padding

    def without(self, topics: set[str]) -> CostmapConfig:
        """A copy whose layers drop the sources observing ``topics`` (names without a leading slash)."""
        layers = tuple(replace(layer, sources=tuple(s for s in layer.sources if s.key not in topics))
                       for layer in self.layers)
        return replace(self, layers=layers)


def _layer(name: str, kind: str, section: Mapping, where: str) -> LayerConfig:
    sources = []
    for source in _typed(section, 'observation_sources', '', where).split():
        sub = section.get(source, {})
        if not isinstance(sub, Mapping):
            raise CostmapConfigError(f'{where}.{source}: expected a section of source parameters')
        src = _read(Source, sub, f'{where}.{source}', name=source)
        if src.data_type != 'PointCloud2':
            raise CostmapConfigError(f'{where}.{source}: data_type {src.data_type} is not modelled (the '
                                     'evaluator takes PointCloud2 sources)')
        sources.append(src)
    layer = _read(LayerConfig, section, where, name=name, kind=kind, sources=tuple(sources))
    if kind == 'voxel' and not 1 <= layer.z_voxels <= 16:
        raise CostmapConfigError(f'{where}.z_voxels must be 1-16 (Nav2 keeps a voxel column in 16 bits and '
                                 f'cuts it there with an error), got {layer.z_voxels}')
    return layer


def load_params(path: str | Path, node: str = 'local_costmap') -> dict:
    """The ``ros__parameters`` of costmap node ``node`` in a Nav2 params file: under ``node: node:`` (the
    costmap inside its Costmap2DROS wrapper, as nav2_params.yaml writes it) or ``node:``.

    Raises:
        CostmapConfigError: the file has no such section.
    """
    import yaml
    data = yaml.safe_load(Path(path).read_text()) or {}
    top = data.get(node, {}) if isinstance(data, Mapping) else {}
    for candidate in (top.get(node, {}) if isinstance(top, Mapping) else {}, top):
        if isinstance(candidate, Mapping) and isinstance(candidate.get('ros__parameters'), Mapping):
            return dict(candidate['ros__parameters'])
    raise CostmapConfigError(f'{path}: no {node}: {node}: ros__parameters (or {node}: ros__parameters) '
                             'section')


# ---------------------------------------------------------------------------------------------------------
# Bresenham walks, as raytraceLine / nav2_voxel_grid's raytraceLine step them
# ---------------------------------------------------------------------------------------------------------

def _walk(end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ray index, step i) of every cell visited by rays that take ``end`` steps (``end + 1`` cells)."""
    count = end + 1
    ray = np.repeat(np.arange(count.size), count)
    first = np.cumsum(count) - count
    return ray, np.arange(ray.size) - first[ray]


def _bresenham(starts: list[np.ndarray], deltas: list[np.ndarray], scale: np.ndarray) -> list[np.ndarray]:
    """Cells of Bresenham lines from integer ``starts`` by integer ``deltas`` (one array per axis), each cut
    to ``trunc(scale * |dominant delta|)`` steps: the dominant axis (x before y before z on ties) moves every
    step, each other axis when its error, started at ``|da| // 2`` and raised by ``|db|``, reaches ``|da|``.
    The start cell and the cell after the last step are both visited."""
    mags = [np.abs(d) for d in deltas]
    signs = [np.where(d > 0, 1, -1) for d in deltas]
    dominant = np.zeros(scale.size, np.int64)
    for axis in range(1, len(deltas)):
        later = np.stack(mags[axis:], axis=0).max(axis=0)
        dominant = np.where((dominant == axis - 1) & (mags[axis - 1] < later), axis, dominant)
    da = np.choose(dominant, mags)
    end = np.minimum(np.trunc(scale * da).astype(np.int64), da)
    ray, i = _walk(end)
    da_r = da[ray]
    out = []
    for axis in range(len(deltas)):
        moves = (da_r // 2 + i * mags[axis][ray]) // np.maximum(da_r, 1)
        moves = np.where(dominant[ray] == axis, i, moves)
        out.append(starts[axis][ray] + moves * signs[axis][ray])
    return out


def trace_2d(x0: int, y0: int, x1, y1, max_length: int = _UINT_MAX,
             min_length: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cells (mx, my) that Nav2's ``Costmap2D::raytraceLine`` visits from cell (x0, y0) to each cell
    (x1[k], y1[k]): rays shorter than ``min_length`` cells visit nothing, the others start ``min_length``
    cells out and stop after ``max_length`` cells (scaled on the dominant axis). Concatenated over rays."""
    x1, y1 = np.atleast_1d(np.asarray(x1, np.int64)), np.atleast_1d(np.asarray(y1, np.int64))
    dxf, dyf = x1 - x0, y1 - y0
    dist = np.hypot(dxf, dyf)
    keep = ~(dist < min_length)
    x1, y1, dxf, dyf, dist = x1[keep], y1[keep], dxf[keep], dyf[keep], dist[keep]
    moved = dist > 0
    safe = np.where(moved, dist, 1.0)
    sx = np.where(moved, np.trunc(x0 + dxf / safe * min_length), x0).astype(np.int64)
    sy = np.where(moved, np.trunc(y0 + dyf / safe * min_length), y0).astype(np.int64)
    scale = np.where(moved, np.minimum(1.0, max_length / safe), 1.0)
    xs, ys = _bresenham([sx, sy], [x1 - sx, y1 - sy], scale)
    return xs, ys


def trace_3d(start: tuple[float, float, float], ends: np.ndarray, max_length: int = _UINT_MAX,
             min_length: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels (x, y, z) that nav2_voxel_grid's ``raytraceLine`` visits from the continuous grid point
    ``start`` to each row of ``ends`` (N, 3), grid units (cells in x, y; voxels in z)."""
    ends = np.asarray(ends, np.float64).reshape(-1, 3)
    origin = np.asarray(start, np.float64)
    dist = np.sqrt(((origin - ends) ** 2).sum(axis=1))
    ends, dist = ends[~(np.trunc(dist) < min_length)], dist[~(np.trunc(dist) < min_length)]
    moved = dist > 0
    safe = np.where(moved, dist, 1.0)
    first = np.where(moved[:, None], origin + (ends - origin) / safe[:, None] * min_length, origin)
    scale = np.where(moved, np.minimum(1.0, max_length / safe), 1.0)
    cell0 = np.trunc(first).astype(np.int64)
    deltas = np.trunc(ends).astype(np.int64) - cell0
    xs, ys, zs = _bresenham([cell0[:, 0], cell0[:, 1], cell0[:, 2]],
                            [deltas[:, 0], deltas[:, 1], deltas[:, 2]], scale)
    return xs, ys, zs


def _cell_distance(world: float, resolution: float) -> int:
    """Nav2's ``cellDistance``: whole cells covering a distance, rounded up."""
    return int(max(0.0, math.ceil(world / resolution)))


def _fill_convex(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells of a convex polygon from its outline cells: each outline column filled from its lowest to its
    highest cell (``convexFillCells``)."""
    columns = np.unique(xs)
    low = np.full(columns.size, np.iinfo(np.int64).max)
    high = np.full(columns.size, -1)
    where = np.searchsorted(columns, xs)
    np.minimum.at(low, where, ys)
    np.maximum.at(high, where, ys)
    count = high - low + 1
    ray, i = _walk(count - 1)
    return columns[ray], low[ray] + i


def transform_points(points: np.ndarray, tf: np.ndarray) -> np.ndarray:
    """(N, 3) float32 points (any (..., 3) input) mapped by the 4x4 transform ``tf``, in float32 as tf2
    transforms a PointCloud2; per axis, far faster than an (N, 3) @ (3, 3) product."""
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    rot, shift = tf[:3, :3].astype(np.float32), tf[:3, 3].astype(np.float32)
    out = np.empty_like(pts)
    for axis in range(3):
        column = out[:, axis]
        np.multiply(pts[:, 0], rot[axis, 0], out=column)
        column += pts[:, 1] * rot[axis, 1]
        column += pts[:, 2] * rot[axis, 2]
        column += shift[axis]
    return out


def planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 transform global <- base of a robot at (x, y) heading ``yaw`` on the floor."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = x, y
    return out


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------

@dataclass
class _Observation:
    points: np.ndarray   # (N, 3) float32, global frame, within the source's height band
    origin: np.ndarray   # (3,) float64 sensor origin, global frame
    stamp: float
    source: Source


class _ObstacleLayer:
    """One ``nav2_costmap_2d::ObstacleLayer``: its own grid, buffers and marking/clearing rules."""

    def __init__(self, config: LayerConfig, costmap: CostmapConfig, distro: str) -> None:
        self.config = config
        self.distro = distro
        self.resolution = costmap.resolution
        self.size_x = int(costmap.width / costmap.resolution)
        self.size_y = int(costmap.height / costmap.resolution)
        self.origin_x, self.origin_y = costmap.origin_x, costmap.origin_y
        self.default = NO_INFORMATION if costmap.track_unknown_space else FREE
        self.grid = np.full((self.size_y, self.size_x), self.default, np.uint8)
        self.buffers: dict[str, list[_Observation]] = {s.name: [] for s in config.sources}

    # -- Costmap2D
    def size_in_metres(self) -> tuple[float, float]:
        return (self.size_x - 0.5) * self.resolution, (self.size_y - 0.5) * self.resolution

    def world_to_map(self, wx, wy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell indices and whether they are in the window (``worldToMap``; NaN is outside)."""
        wx, wy = np.asarray(wx, np.float64), np.asarray(wy, np.float64)
        fx, fy = (wx - self.origin_x) / self.resolution, (wy - self.origin_y) / self.resolution
        inside = (wx >= self.origin_x) & (wy >= self.origin_y) & (fx < self.size_x) & (fy < self.size_y)
        mx = np.where(inside, fx, 0).astype(np.int64)
        my = np.where(inside, fy, 0).astype(np.int64)
        return mx, my, inside

    def _shift(self, arrays: list[np.ndarray], defaults: list, new_ox: float, new_oy: float) -> list:
        """``updateOrigin``: snap the new origin to whole cells and keep the overlap of each array."""
        cx = int((new_ox - self.origin_x) / self.resolution)
        cy = int((new_oy - self.origin_y) / self.resolution)
        lx, ly = min(max(cx, 0), self.size_x), min(max(cy, 0), self.size_y)
        ux, uy = min(max(cx + self.size_x, 0), self.size_x), min(max(cy + self.size_y, 0), self.size_y)
        out = []
        for old, default in zip(arrays, defaults, strict=True):
            new = np.full_like(old, default)
            new[ly - cy:uy - cy, lx - cx:ux - cx] = old[ly:uy, lx:ux]
            out.append(new)
        self.origin_x += cx * self.resolution
        self.origin_y += cy * self.resolution
        return out

    def update_origin(self, new_ox: float, new_oy: float) -> None:
        (self.grid,) = self._shift([self.grid], [self.default], new_ox, new_oy)

    # -- observation buffer
    def buffer(self, source: Source, points: np.ndarray, global_from_sensor: np.ndarray,
               stamp: float) -> None:
        """``ObservationBuffer::bufferCloud``: into the global frame, the source's height band kept."""
        world = transform_points(points, global_from_sensor)
        z = world[:, 2]
        keep = (z <= np.float32(source.max_obstacle_height)) & (z >= np.float32(source.min_obstacle_height))
        keep &= np.isfinite(world[:, 0]) & np.isfinite(world[:, 1])
        origin = global_from_sensor[:3, 3].astype(np.float64)
        self.buffers[source.name].insert(0, _Observation(world[keep], origin, stamp, source))

    def purge(self, now: float) -> None:
        """``purgeStaleObservations``: the newest only with ``observation_persistence: 0``, else those not
        older than it."""
        for source in self.config.sources:
            kept = self.buffers[source.name]
            keep = source.observation_persistence
            self.buffers[source.name] = kept[:1] if keep == 0 else [o for o in kept if now - o.stamp <= keep]

    def observations(self, flag: str) -> list[_Observation]:
        return [o for s in self.config.sources if getattr(s, flag) for o in self.buffers[s.name]]

    # -- updateBounds / updateCosts
    def update(self, robot: tuple[float, float, float], rolling: bool, footprint: np.ndarray,
               now: float) -> None:
        self.purge(now)
        if rolling:
            sx, sy = self.size_in_metres()
            self.update_origin(robot[0] - sx / 2, robot[1] - sy / 2)
        if not self.config.enabled:
            return
        for obs in self.observations('clearing'):
            self.raytrace(obs)
        for obs in self.observations('marking'):
            self.mark(obs)
        if self.config.footprint_clearing_enabled:
            self.clear_footprint(robot, footprint)

    def raytrace(self, obs: _Observation) -> None:
        """``ObstacleLayer::raytraceFreespace``: 2-D rays from the sensor cell to each point, clipped to
        the window."""
        ox, oy = float(obs.origin[0]), float(obs.origin[1])
        x0, y0, inside = self.world_to_map(ox, oy)
        if not inside or obs.points.size == 0:
            return
        wx, wy = obs.points[:, 0].astype(np.float64), obs.points[:, 1].astype(np.float64)
        a, b = wx - ox, wy - oy
        end_x = self.origin_x + self.size_x * self.resolution
        end_y = self.origin_y + self.size_y * self.resolution
        with np.errstate(divide='ignore', invalid='ignore'):
            low = wx < self.origin_x
            wy = np.where(low, oy + b * ((self.origin_x - ox) / a), wy)
            wx = np.where(low, self.origin_x, wx)
            low = wy < self.origin_y
            wx = np.where(low, ox + a * ((self.origin_y - oy) / b), wx)
            wy = np.where(low, self.origin_y, wy)
            high = wx > end_x
            wy = np.where(high, oy + b * ((end_x - ox) / a), wy)
            wx = np.where(high, end_x - 0.001, wx)
            high = wy > end_y
            wx = np.where(high, ox + a * ((end_y - oy) / b), wx)
            wy = np.where(high, end_y - 0.001, wy)
        mx, my, ok = self.world_to_map(wx, wy)
        ends = np.unique(my[ok] * self.size_x + mx[ok])
        src = obs.source
        xs, ys = trace_2d(int(x0), int(y0), ends % self.size_x, ends // self.size_x,
                          _cell_distance(src.raytrace_max_range, self.resolution),
                          _cell_distance(src.raytrace_min_range, self.resolution))
        self.grid[ys, xs] = FREE

    def _in_marking_range(self, pts: np.ndarray, obs: _Observation, mx, my) -> np.ndarray:
        """The marking range test of this distro (see the module docstring)."""
        src, o = obs.source, obs.origin
        if self.distro == 'kilted':
            sq = ((pts - o) ** 2).sum(axis=1)
            return (sq < src.obstacle_max_range ** 2) & ~(sq < src.obstacle_min_range ** 2)
        x0, y0, _ = self.world_to_map(o[0], o[1])
        cells = np.trunc(np.hypot(mx - x0, my - y0))
        ok = (cells <= _cell_distance(src.obstacle_max_range, self.resolution)) & \
            (cells >= _cell_distance(src.obstacle_min_range, self.resolution))
        if self.distro == 'jazzy':
            sq = ((pts[:, :2] - o[:2]) ** 2).sum(axis=1)
            ok &= ~(sq > src.obstacle_max_range ** 2) & ~(sq < src.obstacle_min_range ** 2)
        return ok

    def mark(self, obs: _Observation) -> None:
        """``ObstacleLayer::updateBounds`` marking: layer height band, window, range; then lethal."""
        if self.distro != 'kilted' and not self.world_to_map(obs.origin[0], obs.origin[1])[2]:
            return  # "Sensor origin is out of map bounds": the whole observation marks nothing
        pts = obs.points.astype(np.float64)
        z = pts[:, 2]
        pts = pts[~(z < self.config.min_obstacle_height) & ~(z > self.config.max_obstacle_height)]
        mx, my, ok = self.world_to_map(pts[:, 0], pts[:, 1])
        ok &= self._in_marking_range(pts, obs, mx, my)
        self.grid[my[ok], mx[ok]] = LETHAL

    def clear_footprint(self, robot: tuple[float, float, float], footprint: np.ndarray) -> None:
        """``setConvexPolygonCost(footprint, FREE_SPACE)``; nothing when a corner is outside the window."""
        c, s = math.cos(robot[2]), math.sin(robot[2])
        wx = robot[0] + footprint[:, 0] * c - footprint[:, 1] * s
        wy = robot[1] + footprint[:, 0] * s + footprint[:, 1] * c
        mx, my, ok = self.world_to_map(wx, wy)
        if len(footprint) < 3 or not ok.all():
            return
        outline = [trace_2d(int(mx[k]), int(my[k]), mx[(k + 1) % len(mx)], my[(k + 1) % len(my)])
                   for k in range(len(mx))]
        xs, ys = _fill_convex(np.concatenate([o[0] for o in outline]),
                              np.concatenate([o[1] for o in outline]))
        self.grid[ys, xs] = FREE


class _VoxelLayer(_ObstacleLayer):
    """One ``nav2_costmap_2d::VoxelLayer``: an obstacle layer whose cells are 16-bit voxel columns."""

    def __init__(self, config: LayerConfig, costmap: CostmapConfig, distro: str) -> None:
        super().__init__(config, costmap, distro)
        self.voxels = np.full(self.grid.shape, _UNKNOWN_COLUMN, np.uint32)
        # Nav2 adds the 16 - z_voxels bits that never exist to the threshold (they stay "unknown").
        self.unknown_threshold = config.unknown_threshold + 16 - config.z_voxels

    def update_origin(self, new_ox: float, new_oy: float) -> None:
        self.grid, self.voxels = self._shift([self.grid, self.voxels], [self.default, _UNKNOWN_COLUMN],
                                             new_ox, new_oy)

    def _to_grid(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``worldToMap3DFloat``: continuous voxel coordinates (N, 3) and whether they are in the grid."""
        cfg = self.config
        lo = np.array([self.origin_x, self.origin_y, cfg.origin_z])
        m = (w - lo) / np.array([self.resolution, self.resolution, cfg.z_resolution])
        inside = (w >= lo).all(axis=-1) & (m < [self.size_x, self.size_y, cfg.z_voxels]).all(axis=-1)
        return m, inside

    def _clip(self, p: np.ndarray, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Ray parameter t that keeps ``o + t d`` inside the grid's box: below its top less 1 cm, above
        ``origin_z``, within the window's ``size - 0.5`` cells (Nav2's ``getSizeInMeters``)."""
        cfg = self.config
        t = np.ones(len(p))
        top = cfg.origin_z + (cfg.z_voxels - 0.5) * cfg.z_resolution
        above, below = p[:, 2] > top, p[:, 2] < cfg.origin_z
        t = np.where(above, np.maximum(0.0, np.minimum(t, (top - 0.01 - o[2]) / d[:, 2])), t)
        below &= ~above
        t = np.where(below, np.minimum(t, (cfg.origin_z - o[2]) / d[:, 2]), t)
        outside = above | below
        (sx, sy), lows = self.size_in_metres(), (self.origin_x, self.origin_y)
        for axis, lo, hi in ((0, lows[0], lows[0] + sx), (1, lows[1], lows[1] + sy)):
            for hit, bound in ((p[:, axis] < lo, lo), (p[:, axis] > hi, hi)):
                t = np.where(hit, np.minimum(t, (bound - o[axis]) / d[:, axis]), t)
                outside |= hit
        if self.distro != 'humble':   # Jazzy pulls clipped ends 1e-5 back inside
            t = np.where(outside & (t > 0), t - 1e-5, np.where(outside & (t < 0), t + 1e-5, t))
        return t

    def raytrace(self, obs: _Observation) -> None:
        """``VoxelLayer::raytraceFreespace``: 3-D rays to each point pulled back by two cells, clipped to
        the grid's box; voxels cleared, columns with few marked voxels left set free (or unknown)."""
        o = obs.origin
        start, inside = self._to_grid(o[None, :])
        if not inside[0] or obs.points.size == 0:
            return
        p = obs.points.astype(np.float64)
        dist = np.sqrt(((p - o) ** 2).sum(axis=1))
        with np.errstate(divide='ignore', invalid='ignore'):
            f = (dist - 2 * self.resolution) / dist
            f = np.where(f < 1.0, f, 1.0)   # std::min(1.0, f): NaN (a point at the sensor) gives 1
            d = (p - o) * np.where(f < 0.0, 0.0, f)[:, None]
            t = self._clip(o + d, o, d)
            p = o + d * t[:, None]
        ends, ok = self._to_grid(p)
        ends = ends[ok]
        src = obs.source
        xs, ys, zs = trace_3d(tuple(start[0]), ends, _cell_distance(src.raytrace_max_range, self.resolution),
                              _cell_distance(src.raytrace_min_range, self.resolution))
        self._clear_voxels(xs, ys, zs)

    def _clear_voxels(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> None:
        if xs.size == 0:
            return
        flat = ys * self.size_x + xs
        mask = np.zeros(self.voxels.size, np.uint32)
        np.bitwise_or.at(mask, flat, ((np.uint32(1) << zs.astype(np.uint32)) * np.uint32(0x10001)))
        columns = self.voxels.reshape(-1)
        columns &= ~mask
        touched = np.unique(flat)
        col = columns[touched]
        marked = _popcount(col >> 16)
        unknown = _popcount((col >> 16) ^ (col & 0xFFFF))
        freed = marked <= self.config.mark_threshold
        value = np.where(unknown <= self.unknown_threshold, FREE, NO_INFORMATION).astype(np.uint8)
        self.grid.reshape(-1)[touched[freed]] = value[freed]

    def mark(self, obs: _Observation) -> None:
        """``VoxelLayer::updateBounds`` marking: height (max only on Humble), 3-D range, voxel; the column
        is lethal with more than ``mark_threshold`` marked voxels."""
        cfg, src = self.config, obs.source
        p = obs.points.astype(np.float64)
        z = p[:, 2]
        keep = ~(z > cfg.max_obstacle_height)
        if self.distro != 'humble':
            keep &= ~(z < cfg.min_obstacle_height)
        sq = ((p - obs.origin) ** 2).sum(axis=1)
        keep &= ~(sq >= src.obstacle_max_range ** 2) & ~(sq < src.obstacle_min_range ** 2)
        p = p[keep]
        p[:, 2] = np.maximum(p[:, 2], cfg.origin_z)
        m, ok = self._to_grid(p)
        mx, my, mz = (m[ok].astype(np.int64).T if ok.any() else (np.zeros(0, np.int64),) * 3)
        if mx.size == 0:
            return
        flat = my * self.size_x + mx
        bits = np.zeros(self.voxels.size, np.uint32)
        np.bitwise_or.at(bits, flat, (np.uint32(1) << mz.astype(np.uint32)) * np.uint32(0x10001))
        columns = self.voxels.reshape(-1)
        columns |= bits
        touched = np.unique(flat)
        lethal = _popcount(columns[touched] >> 16) > cfg.mark_threshold
        self.grid.reshape(-1)[touched[lethal]] = LETHAL


def _popcount(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint32)
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return ((v * np.uint32(0x01010101)) >> 24).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# The costmap
# ---------------------------------------------------------------------------------------------------------

class LocalCostmap:
    """Nav2's costmap for one params file: call ``update`` per costmap update with the newest clouds.

    Args:
        config: the costmap's parameters (``CostmapConfig.from_yaml``).
        distro: 'humble' (default), 'jazzy' or 'kilted': whose layer semantics to model.
    """

    def __init__(self, config: CostmapConfig, distro: str = 'humble') -> None:
        if distro not in DISTROS:
            raise ValueError(f"distro must be one of {', '.join(DISTROS)}, got {distro!r}")
        self.config = config
        self.distro = distro
        self.footprint = config.footprint_points()
        self.layers = [(_VoxelLayer if layer.kind == 'voxel' else _ObstacleLayer)(layer, config, distro)
                       for layer in config.layers]
        self.grid = self._combine()

    @property
    def resolution(self) -> float:
        return self.config.resolution

    @property
    def origin(self) -> tuple[float, float]:
        """World coordinates of the window's lower-left corner (cell (0, 0)'s corner)."""
        return self.layers[0].origin_x, self.layers[0].origin_y

    @property
    def lethal(self) -> np.ndarray:
        """(size_y, size_x) bool: cells Nav2 marks lethal (``grid == LETHAL``); row = my, column = mx."""
        return self.grid == LETHAL

    def topics(self) -> set[str]:
        """Topics (without a leading slash) that some source of an enabled layer observes."""
        return {s.key for layer in self.config.layers if layer.enabled for s in layer.sources}

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """World x and y of every cell centre, each (size_y, size_x)."""
        ny, nx = self.grid.shape
        ox, oy = self.origin
        return np.meshgrid(ox + (np.arange(nx) + 0.5) * self.resolution,
                           oy + (np.arange(ny) + 0.5) * self.resolution)

    def update(self, robot: tuple[float, float, float], clouds: Mapping[str, np.ndarray] | None = None,
               base_to_sensor: np.ndarray | None = None, stamp: float = 0.0) -> np.ndarray:
        """One costmap update with the robot at ``robot`` = (x, y, yaw) in the global frame.

        Args:
            clouds: topic (with or without the leading slash) -> points (N, 3) or (H, W, 3) in the sensor
                frame (the camera's optical frame); NaN rows are invalid. Sources whose topic is absent
                re-use their buffered observation, as Nav2 does between clouds.
            base_to_sensor: 4x4 transform base <- sensor (``CameraMount.base_to_optical()``) at the clouds'
                stamp; required with clouds.
            stamp: seconds; the clouds' stamp and the update time (observation_persistence ages by it).

        Returns:
            The combined grid (size_y, size_x) uint8: FREE, LETHAL or NO_INFORMATION.
        """
        if clouds:
            if base_to_sensor is None:
                raise ValueError('clouds need base_to_sensor (the transform base <- sensor)')
            global_from_sensor = planar_pose(*robot) @ np.asarray(base_to_sensor, np.float64)
            given = {topic.lstrip('/'): pts for topic, pts in clouds.items()}
            for layer in self.layers:
                for source in layer.config.sources:
                    if source.key in given:
                        layer.buffer(source, given[source.key], global_from_sensor, stamp)
        for layer in self.layers:
            layer.update(robot, self.config.rolling_window, self.footprint, stamp)
        self.grid = self._combine()
        return self.grid

    def _combine(self) -> np.ndarray:
        """Every enabled layer onto a fresh master grid by its ``combination_method``: 1 ``updateWithMax``,
        0 ``updateWithOverwrite`` (an unknown layer cell changes nothing either way), others not at all."""
        default = NO_INFORMATION if self.config.track_unknown_space else FREE
        master = np.full(self.layers[0].grid.shape, default, np.uint8)
        for layer in self.layers:
            method, cost = layer.config.combination_method, layer.grid
            if not layer.config.enabled or method not in (0, 1):
                continue
            take = cost != NO_INFORMATION
            if method == 1:
                take &= (master == NO_INFORMATION) | (master < cost)
            master[take] = cost[take]
        return master
