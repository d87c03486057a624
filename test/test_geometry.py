"""The student's grids: which grid it publishes for a camera, where the camera image sits in the model input,
and which model pixel each published pixel takes. Expected values are worked out by hand in the comments."""

import numpy as np
import pytest

from rc_perception.camera import Intrinsics, scale_intrinsics
from student_trt.geometry import Placement, frame_geometry, letterbox, output_grid

MODEL = (240, 320)


@pytest.mark.parametrize('camera, grid', [
    ((480, 640), (240, 320)),    # /2: exactly the model's pixel count
    ((360, 640), (180, 320)),    # /2 (0.75x the model's pixels) beats /1 (3x)
    ((720, 1280), (180, 320)),   # /4 (0.75x) beats /5 (0.48x) and /2 (3x)
    ((480, 848), (240, 424)),    # /2 (1.33x) beats /4 (0.33x); 848 = 16 x 53 has no factor 3
    ((1080, 1920), (216, 384)),  # /5 (1.08x) beats /6 (0.75x)
    ((640, 480), (320, 240)),    # portrait: /2
    ((240, 320), (240, 320)),    # the model's size
    ((750, 1000), (240, 320)),   # /2 is 2.44x, /5 0.39x: no whole factor within 2x -> 4:3 at 76800 pixels
    ((481, 641), (240, 320)),    # only /1 (4x): 481/2.0036 and 641/2.0036 rounded
    ((120, 160), (120, 160)),    # smaller than the model: its own size, never upsampled
    ((10, 100), (10, 100)),
    ((1, 1), (1, 1)),
    # a line camera: only /1 (4.2x); sqrt(320002 / 76800) = 2.0412 -> 2 / 2.0412 rounds to 1 row,
    # 160001 / 2.0412 = 78383.9 to 78384 columns
    ((2, 160001), (1, 78384)),
])
def test_output_grid_keeps_the_camera_aspect_near_the_model_size(camera, grid):
    assert output_grid(camera, MODEL) == grid, f'{camera}: expected {grid}, got {output_grid(camera, MODEL)}'


@pytest.mark.parametrize('camera, placement', [
    ((480, 640), Placement(0, 0, 240, 320)),
    ((360, 640), Placement(30, 0, 180, 320)),    # 640 / 320 = 2 -> 180 rows, (240 - 180) / 2 = 30 above
    ((720, 1280), Placement(30, 0, 180, 320)),
    ((480, 848), Placement(29, 0, 181, 320)),    # 848 / 320 = 2.65 -> 181.1 rows; 59 rows of padding: 29 + 30
    ((640, 480), Placement(0, 70, 240, 180)),    # portrait: 640 / 240 = 2.67 -> 180 columns, 70 either side
    ((10, 100), Placement(104, 0, 32, 320)),     # 100 / 320 -> 10 / 0.3125 = 32 rows
    ((1, 10000), Placement(119, 0, 1, 320)),     # 1 / 31.25 rounds to 0 rows: at least 1
])
def test_letterbox_fits_the_whole_image_centred(camera, placement):
    assert letterbox(camera, MODEL) == placement


def test_published_pixels_take_the_model_pixel_of_their_camera_block():
    # 640x360 -> 320x180: published (i, j) sits at camera (2i + 1, 2j + 1), inside the 2x2 block that model
    # content pixel (i, j) averaged, which is model pixel (30 + i, j).
    geo = frame_geometry((360, 640), MODEL)
    assert geo.grid == (180, 320)
    np.testing.assert_array_equal(geo.rows, 30 + np.arange(180))
    np.testing.assert_array_equal(geo.cols, np.arange(320))
    # 1280x720 -> 320x180: camera (4i + 2, 4j + 2) in the 4x4 block of content pixel (i, j).
    geo = frame_geometry((720, 1280), MODEL)
    assert geo.grid == (180, 320)
    np.testing.assert_array_equal(geo.rows, 30 + np.arange(180))
    np.testing.assert_array_equal(geo.cols, np.arange(320))
    # Camera pixel (v, u) = (402, 802) is published pixel (100, 200) = (402 - 2) / 4, (802 - 2) / 4 and takes
    # model pixel (130, 200).
    assert (geo.rows[100], geo.cols[200]) == (130, 200)


def test_input_size_grids_repeat_each_model_pixel_over_its_block():
    geo = frame_geometry((480, 640), MODEL, 'input')
    assert geo.grid == (480, 640)
    np.testing.assert_array_equal(geo.rows, np.arange(480) // 2)
    np.testing.assert_array_equal(geo.cols, np.arange(640) // 2)
    geo = frame_geometry((360, 640), MODEL, 'input')
    np.testing.assert_array_equal(geo.rows, 30 + np.arange(360) // 2)


def test_non_whole_scale_maps_to_the_nearest_content_pixel():
    # 848x480 -> 424x240 published (camera 2j + 1), content 320x181 with s_x = 2.65 and
    # s_y = 480 / 181 = 2.65193; content pixel r sits at camera s * r + (s - 1) / 2.
    geo = frame_geometry((480, 848), MODEL)
    assert geo.grid == (240, 424)
    # columns: camera 1 -> (1 - 0.825) / 2.65 = 0.07 -> 0; 425 -> 160.07 -> 160; 847 -> 319.3 -> 319
    assert (geo.cols[0], geo.cols[212], geo.cols[423]) == (0, 160, 319)
    # rows: camera 1 -> 0.07 -> 0; 241 -> 90.57 -> 91; 479 -> 180.31 -> 180; plus the 29 padding rows
    assert (geo.rows[0], geo.rows[120], geo.rows[239]) == (29, 120, 209)


@pytest.mark.parametrize('camera, output_size', [((480, 640), 'model'), ((360, 640), 'model'),
                                                 ((720, 1280), 'model'), ((480, 848), 'model'),
                                                 ((750, 1000), 'model'), ((360, 640), 'input')])
def test_every_published_pixel_is_within_half_a_model_pixel_of_its_source(camera, output_size):
    geo = frame_geometry(camera, MODEL, output_size)
    place = geo.placement
    for axis, (n_cam, n_grid, start, n_content) in enumerate(
            [(camera[0], geo.grid[0], place.top, place.height), (camera[1], geo.grid[1], place.left,
                                                                  place.width)]):
        index = (geo.rows, geo.cols)[axis]
        assert index.min() >= start and index.max() < start + n_content, 'a published pixel took padding'
        f = n_cam // n_grid
        whole = n_cam % n_grid == 0
        # camera coordinate of the published pixels: f j + f // 2 (whole factor), else area centres
        u = f * np.arange(n_grid) + f // 2 if whole else (np.arange(n_grid) + 0.5) * n_cam / n_grid - 0.5
        s = n_cam / n_content
        centre = s * (index - start) + (s - 1) / 2
        assert np.abs(centre - u).max() <= s / 2 + 1e-9, f'axis {axis}: a source more than half a pixel away'


@pytest.mark.parametrize('camera', [(480, 640), (360, 640), (720, 1280), (480, 848)])
def test_scaled_intrinsics_project_onto_the_published_pixel(camera):
    """A point seen at the camera pixel of published pixel (i, j) projects to (i, j) with the K that the
    fusion and the point cloud scale for the published grid (rc_perception.camera.scale_intrinsics)."""
    height, width = camera
    k = Intrinsics(fx=0.8 * width, fy=0.8 * width, cx=(width - 1) / 2 + 3.0, cy=(height - 1) / 2 - 2.0)
    gh, gw = frame_geometry(camera, MODEL).grid
    f = height // gh
    i, j = np.mgrid[0:gh:7, 0:gw:9]
    u, v = f * j + f // 2, f * i + f // 2
    z = 2.5
    x, y = (u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy
    small = scale_intrinsics(k, (width, height), (gw, gh))
    np.testing.assert_allclose(small.fx * x / z + small.cx, j, atol=1e-9)
    np.testing.assert_allclose(small.fy * y / z + small.cy, i, atol=1e-9)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match='camera size must be positive, got 640x0'):
        output_grid((0, 640), MODEL)
    with pytest.raises(ValueError, match='model size must be positive'):
        letterbox((480, 640), (0, 320))
    with pytest.raises(ValueError, match="output_size must be one of model, input, got 'camera'"):
        frame_geometry((480, 640), MODEL, 'camera')
