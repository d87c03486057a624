"""Synthetic scenes and the simulated ToF: determinism, invariants, each ToF failure mode, files on disk."""

import csv
import math

import numpy as np
import pytest

from rc_offline import dataset, scenes
from rc_offline.tof_sim import ToFConfig
from rc_perception.camera import Intrinsics
from rc_perception.labels import CLASS_NAMES

TOF = ToFConfig()
INTR = Intrinsics(480.0, 480.0, 319.5, 239.5)
FLOOR, WALL, BOX, CYLINDER = (CLASS_NAMES.index(n) for n in ('floor', 'wall', 'box', 'cylinder'))

WHITE = scenes.Material('paint', (0.8, 0.8, 0.8), (0.8, 0.8, 0.8), scale=0.0, nir=0.8)
GREY_FLOOR = scenes.Material('concrete', (0.4, 0.4, 0.4), nir=0.5)
CEILING_MAT = scenes.Material('ceiling', (0.85, 0.85, 0.85), nir=0.8)
DARK = scenes.Material('dark', (0.03, 0.03, 0.03), nir=0.01, specular=0.08)
MATTE = scenes.Material('cardboard', (0.5, 0.34, 0.18), (0.5, 0.34, 0.18), scale=0.0, nir=0.55)
METAL = scenes.Material('metal', (0.6, 0.6, 0.6), nir=0.3, specular=0.85)


def corridor(*boxes: scenes.Box, length: float = 9.0) -> scenes.Scene:
    """A 3 m wide corridor along +x with white walls; materials 0 floor, 1 walls, 2 ceiling, 3.. objects."""
    return scenes.Scene(kind='corridor', bounds=(0.0, length, 0.0, 3.0), ceiling_height=2.5,
                        materials=(GREY_FLOOR, WHITE, CEILING_MAT, DARK, MATTE, METAL), floor=0, ceiling=2,
                        walls=(1, 1, 1, 1), boxes=boxes)


def box_ahead(material: int, distance: float = 1.5, size: float = 0.6) -> scenes.Box:
    return scenes.Box(0.5 + distance + size / 2, 1.5, 0.0, size, size, 0.6, 0.0, material)


CAMERA = scenes.CameraPose(0.5, 1.5, 0.2, 0.0)   # looking down the corridor, level


def frame_of(scene: scenes.Scene, seed: int = 0) -> scenes.SceneFrame:
    return scenes.render(scene, CAMERA, INTR, seed=seed)


def tof_metres(frame: scenes.SceneFrame) -> np.ndarray:
    z = frame.tof_mm.astype(np.float32) / 1000.0
    z[frame.tof_mm == 0] = np.nan
    return z


@pytest.fixture(scope='module')
def mixed_frames() -> list[scenes.SceneFrame]:
    return list(scenes.random_frames(seed=5, count=6)) + list(scenes.sequence_frames(seed=6, count=4))


# ------------------------------------------------------------------------------------------ determinism

def _assert_same(a: scenes.SceneFrame, b: scenes.SceneFrame) -> None:
    for name in ('rgb', 'depth', 'labels', 'tof_mm', 'confidence'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f'{name} differs')
    assert a.intrinsics == b.intrinsics and a.pose == b.pose


def test_random_frames_are_deterministic_by_seed():
    first = list(scenes.random_frames(seed=3, count=2))
    again = list(scenes.random_frames(seed=3, count=2))
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)
    # Frame i depends on (seed, i) alone, not on where the batch starts.
    _assert_same(next(scenes.random_frames(seed=3, count=1, start=1)), first[1])
    other = next(scenes.random_frames(seed=4, count=1))
    assert not np.array_equal(other.rgb, first[0].rgb), 'seed 4 gave the same RGB as seed 3'
    assert not np.array_equal(other.depth, first[0].depth), 'seed 4 gave the same depth as seed 3'


def test_sequence_is_deterministic_and_smooth():
    frames = list(scenes.sequence_frames(seed=8, count=6, rate_hz=15.0))
    for a, b in zip(frames, scenes.sequence_frames(seed=8, count=6, rate_hz=15.0), strict=True):
        _assert_same(a, b)
    assert [f.stamp for f in frames] == pytest.approx([i / 15.0 for i in range(6)])
    assert len({f.intrinsics for f in frames}) == 1, 'a sequence must keep its intrinsics'
    for a, b in zip(frames, frames[1:], strict=False):
        step = math.hypot(b.pose.x - a.pose.x, b.pose.y - a.pose.y)
        turn = abs((b.pose.yaw - a.pose.yaw + math.pi) % (2 * math.pi) - math.pi)
        assert 0.02 < step < 0.07, f'camera moved {step:.3f} m in one 15 Hz frame (expected 0.5-0.8 m/s)'
        assert turn < math.radians(12), f'heading jumped {math.degrees(turn):.1f} deg between frames'
    other = next(scenes.sequence_frames(seed=9, count=1))
    assert not np.array_equal(other.depth, frames[0].depth)


# ------------------------------------------------------------------------------------------ invariants

def test_frame_contents_and_ground_truth(mixed_frames):
    for f in mixed_frames:
        assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
        assert f.depth.shape == (480, 640) and f.depth.dtype == np.float32
        assert f.labels.dtype == np.uint8 and f.tof_mm.dtype == np.uint16 and f.confidence.dtype == np.uint8
        assert f.labels.max() < len(CLASS_NAMES), f'label {f.labels.max()} is not a class id'
        assert np.all(np.isfinite(f.depth)) and f.depth.min() > 0.05, \
            f'depth must be finite and positive everywhere indoors, got min {np.nanmin(f.depth)}'
        assert f.depth.max() < 12.0, f'depth {f.depth.max():.2f} m beyond the scenes\' 10 m size'
        assert 0.15 <= f.pose.z <= 0.3 and 460 <= f.intrinsics.fx <= 500
        assert f.rgb.std() > 10, 'RGB looks flat'
    labels = np.concatenate([f.labels.ravel() for f in mixed_frames])
    present = {CLASS_NAMES[i] for i in np.unique(labels)}
    assert {'floor', 'wall', 'box', 'cylinder'} <= present, f'classes seen in 10 frames: {present}'


def test_tof_invariants(mixed_frames):
    for f in mixed_frames:
        valid = f.tof_mm > 0
        assert f.tof_mm.max() <= TOF.max_range * 1000, f'valid ToF pixel at {f.tof_mm.max()} mm'
        assert np.all(f.confidence[~valid] == 0), 'confidence must be 0 where the ToF is invalid'
        assert np.all(f.confidence[valid] > 0), 'a valid ToF pixel has confidence 0'
        beyond = f.depth > TOF.max_range * 1.05
        flying = valid & beyond
        assert flying.mean() < 0.002, 'pixels whose surface lies beyond the range must be invalid ' \
            f'(except a few mixed edge pixels); {flying.sum()} are valid'


def test_tof_accurate_where_confident_and_threshold_removes_most_bad_pixels(mixed_frames):
    errors, conf = [], []
    for f in mixed_frames:
        valid = f.tof_mm > 0
        errors.append(np.abs(tof_metres(f)[valid] - f.depth[valid]))
        conf.append(f.confidence[valid])
    errors, conf = np.concatenate(errors), np.concatenate(conf)
    trusted = conf >= TOF.confidence_threshold
    assert trusted.mean() > 0.5, f'only {trusted.mean():.0%} of valid pixels are confident'
    assert np.median(errors[trusted]) < 0.015, f'median error {np.median(errors[trusted]):.3f} m'
    assert np.percentile(errors[trusted], 95) < 0.06, f'95th pct {np.percentile(errors[trusted], 95):.3f} m'
    bad = errors > 0.10
    kept = (bad & trusted).sum() / max(bad.sum(), 1)
    assert bad.sum() > 100, f'expected flying / noisy pixels in 10 frames, found {bad.sum()}'
    assert 0.0 < kept < 0.5, f'thresholding at {TOF.confidence_threshold} kept {kept:.0%} of bad pixels ' \
        '(expected most removed, not all)'
    assert np.median(conf[bad]) < np.median(conf[~bad]), 'bad pixels should have lower confidence'


# ------------------------------------------------------------------------------------------ failure modes

def _box_pixels(scene: scenes.Scene) -> np.ndarray:
    geo = scenes.render_geometry(scene, CAMERA, INTR, shading_inputs=False)
    interior = geo.surface == 6
    # Stay two pixels inside the silhouette: edges are the flying-pixel test's business.
    for axis in (0, 1):
        for shift in (-2, 2):
            interior &= np.roll(geo.surface == 6, shift, axis=axis)
    return interior


@pytest.mark.parametrize(('material', 'expect_valid'), [(3, False), (4, True)])
def test_dark_box_drops_out_and_matte_box_does_not(material, expect_valid):
    scene = corridor(box_ahead(material))
    f = frame_of(scene)
    box = _box_pixels(scene)
    assert box.sum() > 1000
    share = (f.tof_mm[box] > 0).mean()
    if expect_valid:
        assert share > 0.95, f'matte box at 1.5 m: only {share:.0%} valid'
    else:
        assert share < 0.05, f'black box (NIR 1%) at 1.5 m: {share:.0%} valid, expected dropouts'


def test_specular_box_has_dropouts():
    scene = corridor(box_ahead(5, distance=1.0))
    f = frame_of(scene)
    box = _box_pixels(scene)
    share = (f.tof_mm[box] == 0).mean()
    assert share > 0.25, f'brushed metal box: only {share:.0%} dropouts'
    assert (f.tof_mm[box] > 0).any(), 'a glossy box should not vanish completely at 1 m'


def test_far_wall_beyond_max_range_is_invalid_and_near_wall_valid():
    f = frame_of(corridor(length=9.0))
    wall = f.labels == WALL
    far = wall & (f.depth > TOF.max_range)
    near = wall & (f.depth < 2.5)
    assert far.sum() > 1000 and near.sum() > 1000
    assert (f.tof_mm[far] == 0).all(), 'wall pixels beyond the maximum range must be invalid'
    assert (f.tof_mm[near] > 0).mean() > 0.9, 'white wall within 2.5 m should be mostly valid'


def test_grazing_floor_is_invalid():
    f = frame_of(corridor())
    floor = f.labels == FLOOR
    # Level camera at 0.2 m: cos(incidence) on the floor = 0.2 / range.
    rng = f.depth * np.sqrt(1 + ((np.arange(640) - INTR.cx) / INTR.fx) ** 2
                            + ((np.arange(480)[:, None] - INTR.cy) / INTR.fy) ** 2)
    grazing = floor & (CAMERA.z / rng < math.cos(math.radians(TOF.grazing_deg)) * 0.97)
    steep = floor & (rng < 0.7)
    assert grazing.sum() > 1000 and steep.sum() > 1000
    assert (f.tof_mm[grazing] == 0).all(), 'floor seen beyond the grazing limit must be invalid'
    assert (f.tof_mm[steep] > 0).mean() > 0.9, 'floor close to the car should be mostly valid'


def test_flying_pixels_between_foreground_and_background():
    box = box_ahead(4, distance=1.0, size=0.5)    # matte box 1 m ahead, side walls ~1.5 m, far wall 8.5 m
    scene = corridor(box, length=4.0)             # far wall at 3.5 m: inside the range
    f = frame_of(scene)
    geo = scenes.render_geometry(scene, CAMERA, INTR, shading_inputs=False)
    on_box = geo.surface == 6
    edge = on_box ^ np.roll(on_box, 1, axis=1) | on_box ^ np.roll(on_box, -1, axis=1)
    edge &= (f.depth > 0.9) & (np.abs(np.arange(480)[:, None] - 240) < 60)
    tof = tof_metres(f)
    near, far = 1.0, 3.0
    mixed = edge & (tof > near + 0.15) & (tof < far - 0.3)
    assert mixed.sum() >= 10, f'expected flying pixels at the box silhouette, found {mixed.sum()}'
    inside = _box_pixels(scene)
    assert np.median(f.confidence[mixed]) < np.median(f.confidence[inside]), \
        'flying pixels should have lower confidence than the box interior'


def test_an_absorbent_box_does_not_pull_the_wall_behind_it_forward():
    # A mixed pixel's reading is weighted by the light each side returns: the near side of an edge
    # dominates when both reflect alike (above), but an absorbent box (the drive's dark block) returns
    # almost nothing, so the wall pixels around its silhouette keep (nearly) the wall's range and the
    # box's own edge pixels, if valid, report the wall: no point is left hanging in the air between them.
    from dataclasses import replace
    absorbent = scenes.Material('dark', (0.03, 0.03, 0.035), nir=0.001, specular=0.05)
    scene = corridor(box_ahead(3, distance=1.0, size=0.5), length=4.0)
    scene = replace(scene, materials=scene.materials[:3] + (absorbent,) + scene.materials[4:])
    f = frame_of(scene)
    geo = scenes.render_geometry(scene, CAMERA, INTR, shading_inputs=False)
    on_box = geo.surface == 6
    near_edge = np.zeros_like(on_box)
    for shift in range(-TOF.edge_radius, TOF.edge_radius + 1):
        near_edge |= on_box ^ np.roll(on_box, shift, axis=1)
    near_edge &= np.abs(np.arange(480)[:, None] - 240) < 60
    tof = tof_metres(f)
    valid = near_edge & np.isfinite(tof)
    assert valid.sum() >= 50, f'expected wall readings beside the silhouette, found {valid.sum()}'
    # the worst a wall pixel can move: 70 % of its footprint on a box of NIR 0.001 at 1 m against NIR 0.8
    # at 3.5 m gives the box 1/46 of the light, about 5 cm of the 2.5 m between them (plus noise, up to
    # several cm at 3.5 m)
    hanging = valid & (tof > 1.0 + 0.15) & (tof < 3.5 - 0.3)
    assert hanging.sum() == 0, f'{hanging.sum()} readings between the box and the wall: {tof[hanging][:10]}'


def test_noise_grows_with_distance():
    spread = {}
    for distance in (0.8, 3.0):
        scene = corridor(box_ahead(4, distance=distance, size=0.8))
        f = frame_of(scene, seed=3)
        box = _box_pixels(scene) & (f.tof_mm > 0)
        assert box.sum() > 300
        spread[distance] = np.std(tof_metres(f)[box] - f.depth[box])
    assert spread[3.0] > 3 * spread[0.8], \
        f'noise at 3 m ({spread[3.0] * 1000:.1f} mm) vs 0.8 m ({spread[0.8] * 1000:.1f} mm)'


def test_camera_outside_room_is_refused():
    with pytest.raises(ValueError, match='outside the room'):
        scenes.render_geometry(corridor(), scenes.CameraPose(-1.0, 1.0, 0.2, 0.0), INTR)


# ------------------------------------------------------------------------------------------ training targets

def test_training_targets_line_up_with_the_area_averaged_input():
    rgb, depth, labels = scenes.training_sample(seed=2, index=0)
    full = next(scenes.random_frames(seed=2, count=1, vary_intrinsics=True))
    np.testing.assert_array_equal(rgb, full.rgb)
    assert depth.shape == labels.shape == (240, 320)
    blocks = full.depth.reshape(240, 2, 320, 2)
    block_labels = full.labels.reshape(240, 2, 320, 2)
    uniform = (block_labels == block_labels[:, :1, :, :1]).all(axis=(1, 3))
    assert (labels[uniform] == block_labels[:, 0, :, 0][uniform]).mean() > 0.995
    rel = np.abs(depth - blocks.mean(axis=(1, 3))) / depth
    assert np.median(rel[uniform]) < 1e-3, 'low-res depth should be the centre of each 2x2 block'


# ------------------------------------------------------------------------------------------ files

def test_write_split_round_trips_through_dataset_readers(tmp_path):
    frames = list(scenes.sequence_frames(seed=4, count=3))
    summary = scenes.write_split(tmp_path, frames, meta={'seed': 4})
    assert summary['frames'] == 3
    found = dataset.frame_stems(tmp_path, ('rgb', 'depth', 'labels', 'tof', 'confidence'))
    assert [fr.stem for fr in found] == ['000000', '000001', '000002']
    cam = dataset.load_camera(tmp_path)
    assert (cam['width'], cam['height']) == (640, 480) and cam['fx'] == pytest.approx(frames[0].intrinsics.fx)
    assert cam['tof_max_range'] == TOF.max_range and cam['confidence_threshold'] == TOF.confidence_threshold
    f, paths = frames[1], found[1].paths
    np.testing.assert_array_equal(dataset.read_rgb(paths['rgb']), f.rgb)
    np.testing.assert_allclose(dataset.read_depth(paths['depth']), f.depth, atol=6e-4)
    np.testing.assert_array_equal(dataset.read_image(paths['labels']), f.labels)
    tof = dataset.read_depth(paths['tof'])
    np.testing.assert_array_equal(np.isnan(tof), f.tof_mm == 0)
    np.testing.assert_array_equal(dataset.read_image(paths['confidence']), f.confidence)
    with open(tmp_path / 'poses.csv') as fh:
        rows = list(csv.DictReader(fh))
    assert [r['stem'] for r in rows] == ['000000', '000001', '000002']
    assert float(rows[1]['stamp']) == pytest.approx(1 / 15, abs=1e-6)
    q = np.array([float(rows[1][k]) for k in ('qx', 'qy', 'qz', 'qw')])
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)


def test_quaternion_matches_rotation():
    pose = scenes.CameraPose(1.0, 2.0, 0.2, yaw=0.7, pitch=0.05, roll=-0.03)
    x, y, z, w = pose.quaternion()
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rot, pose.rotation(), atol=1e-9)


def test_cli_writes_a_split_and_rejects_bad_arguments(tmp_path, capsys):
    assert scenes.main(['--out', str(tmp_path / 'seq'), '--frames', '2', '--seed', '1', '--sequence']) == 0
    out = capsys.readouterr().out
    assert 'ms/frame' in out and 'wrote 2 frames' in out
    assert len(list((tmp_path / 'seq' / 'tof').glob('*.png'))) == 2
    assert dataset.load_camera(tmp_path / 'seq')['mode'] == 'sequence'
    assert scenes.main(['--out', str(tmp_path / 'x'), '--frames', '0']) == 2
    assert '--frames must be >= 1' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- the held-out drive

@pytest.fixture(scope='module')
def plan():
    from rc_offline import drive
    return drive.drive(35)


def _pixel(frame: scenes.SceneFrame, world) -> tuple[int, int, float]:
    """Pixel (u, v) and optical depth of a world point in ``frame`` (pinhole, by hand)."""
    cam = (np.asarray(world, float) - frame.pose.position) @ frame.pose.rotation()
    intr = frame.intrinsics
    return (int(round(intr.fx * cam[0] / cam[2] + intr.cx)), int(round(intr.fy * cam[1] / cam[2] + intr.cy)),
            float(cam[2]))


def drive_frame_at(plan, t: float) -> scenes.SceneFrame:
    from rc_offline import drive
    return drive.drive_frame(plan, round(t * 15))


def replace_intrinsics(frame: scenes.SceneFrame, like: scenes.SceneFrame) -> scenes.SceneFrame:
    from dataclasses import replace
    return replace(frame, intrinsics=like.intrinsics)


def test_drive_frames_record_the_base_and_the_camera_on_its_real_mount(plan):
    from rc_offline import drive
    frames = list(drive.drive_frames(35, 3))
    _assert_same(frames[2], drive.drive_frame(plan, 2))   # frame i depends on i alone
    for f in frames:
        x, y, yaw = f.base
        ahead = (f.pose.x - x) * math.cos(yaw) + (f.pose.y - y) * math.sin(yaw)
        beside = -(f.pose.x - x) * math.sin(yaw) + (f.pose.y - y) * math.cos(yaw)
        assert (ahead, beside) == pytest.approx((drive.NOMINAL_MOUNT.x, 0.0), abs=1e-9)
        assert f.pose.z == pytest.approx(drive.NOMINAL_MOUNT.z, abs=0.0031)
        assert f.pose.yaw == pytest.approx(yaw)
        pitch_error = math.degrees(f.pose.pitch - drive.NOMINAL_MOUNT.pitch)
        assert abs(pitch_error - drive.TILT_ERROR_DEG) <= 0.35 + 1e-9, f'pitch error {pitch_error:.2f} deg'
        assert drive.TILT_ERROR_DEG <= drive.MOUNT_TOLERANCE_DEG
    step = math.hypot(frames[1].base[0] - frames[0].base[0], frames[1].base[1] - frames[0].base[1])
    assert step == pytest.approx(drive.SPEED / 15.0, rel=0.02)


def test_the_box_is_removed_while_in_view(plan):
    from rc_offline import drive
    box = plan.removed
    assert box in plan.scene.boxes and box not in plan.scene_after.boxes
    last = round(drive.REMOVED_AT * 15) - 1
    before, after = drive.drive_frame(plan, last), drive.drive_frame(plan, last + 1)
    assert before.stamp < drive.REMOVED_AT <= after.stamp
    u, v, z = _pixel(before, (box.x, box.y, box.size_z / 2))
    assert 0 <= u < 640 and 0 <= v < 480 and 1.0 < z < 2.0, f'box centre at pixel ({u}, {v}), {z:.2f} m'
    near = before.depth[v, u]
    assert near == pytest.approx(z - box.size_x / 2, abs=0.1), 'the pixel sees the box'
    assert before.labels[v, u] == BOX
    assert after.depth[v, u] > near + 0.5, 'a frame later the same pixel sees past where the box stood'


def test_the_dark_block_gives_the_tof_nothing(plan):
    block = plan.dark
    frame = drive_frame_at(plan, 3.0)
    u, v, z = _pixel(frame, (block.x, block.y, block.size_z / 2))
    assert 0 <= u < 640 and 0 <= v < 480 and z < 2.0, f'dark block at pixel ({u}, {v}), {z:.2f} m'
    patch = (slice(v - 5, v + 6), slice(u - 5, u + 6))
    assert np.all(frame.labels[patch] == BOX) and np.all(np.abs(frame.depth[patch] - z) < 0.3)
    assert np.all(frame.tof_mm[patch] == 0), 'the ToF must return nothing from the dark block'


def test_write_split_records_base_poses_of_a_drive(tmp_path, plan):
    from rc_offline import drive
    frames = [drive.drive_frame(plan, i) for i in range(2)]
    scenes.write_split(tmp_path / 'drive', frames, meta=plan.meta())
    with open(tmp_path / 'drive' / 'poses.csv') as fh:
        rows = list(csv.DictReader(fh))
    for row, frame in zip(rows, frames, strict=True):
        assert [float(row[k]) for k in ('base_x', 'base_y', 'base_yaw')] == pytest.approx(frame.base)
    cam = dataset.load_camera(tmp_path / 'drive')
    assert cam['nominal_mount'] == {'x': 0.1, 'y': 0.0, 'z': 0.2, 'roll': 0.0, 'pitch': 0.0, 'yaw': 0.0}
    assert cam['removed']['time'] == drive.REMOVED_AT
    assert cam['removed']['box']['x'] == pytest.approx(plan.removed.x)
    loose = next(scenes.sequence_frames(seed=4, count=1))
    with pytest.raises(ValueError, match='every frame of a split has a base pose or none'):
        scenes.write_split(tmp_path / 'mixed', [frames[0], replace_intrinsics(loose, frames[0])])
