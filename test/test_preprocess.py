"""The one preprocessing function: colour order, resize (matches torch), letterbox, normalization, buffers
reused across frames, metadata."""

import tracemalloc

import numpy as np
import pytest

from student_trt.metadata import ModelSpec
from student_trt.preprocess import Preprocessor, resize

torch = pytest.importorskip('torch')
F = torch.nn.functional

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)


def torch_resize(img: np.ndarray, h: int, w: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    kwargs = {} if mode == 'area' else {'align_corners': False}
    return F.interpolate(t, size=(h, w), mode=mode, **kwargs)[0].permute(1, 2, 0).numpy()


def test_integer_downscale_is_area_average_like_torch():
    np.testing.assert_allclose(resize(IMG, 240, 320), torch_resize(IMG, 240, 320, 'area'), atol=1e-3)
    np.testing.assert_allclose(resize(IMG, 120, 160), torch_resize(IMG, 120, 160, 'area'), atol=1e-3)


def test_2x_area_equals_half_pixel_bilinear():
    np.testing.assert_allclose(resize(IMG, 240, 320), torch_resize(IMG, 240, 320, 'bilinear'), atol=1e-3)


@pytest.mark.parametrize('size', [(300, 400), (240, 320 * 3 // 2), (720, 960)])
def test_other_sizes_are_half_pixel_bilinear_like_torch(size):
    np.testing.assert_allclose(resize(IMG, *size), torch_resize(IMG, *size, 'bilinear'), atol=2e-2)


def test_normalization_and_layout():
    spec = ModelSpec(height=240, width=320)
    x = Preprocessor(spec)(IMG, 'rgb8')
    assert x.shape == (1, 3, 240, 320) and x.dtype == np.float32 and x.flags.c_contiguous
    ref = (torch_resize(IMG, 240, 320, 'area') / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), ref, atol=1e-4)


def test_colour_orders_agree():
    pre = Preprocessor(ModelSpec())
    rgb = pre(IMG, 'rgb8')
    np.testing.assert_array_equal(pre(IMG[:, :, ::-1].copy(), 'bgr8'), rgb)
    rgba = np.concatenate([IMG, np.full((480, 640, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(pre(rgba, 'rgba8'), rgb)
    same = {'mean': (0.5, 0.5, 0.5), 'std': (0.2, 0.2, 0.2)}
    bgr_model = Preprocessor(ModelSpec(color_order='bgr', **same))
    rgb_model = Preprocessor(ModelSpec(color_order='rgb', **same))
    np.testing.assert_array_equal(bgr_model(IMG, 'rgb8')[0, ::-1], rgb_model(IMG, 'rgb8')[0])
    np.testing.assert_array_equal(bgr_model(IMG[:, :, ::-1].copy(), 'bgr8'), bgr_model(IMG, 'rgb8'))


def test_mono_is_replicated():
    spec = ModelSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = Preprocessor(spec)(IMG[:, :, 0].copy(), 'mono8')
    np.testing.assert_array_equal(x[0, 0], x[0, 1])
    np.testing.assert_array_equal(x[0, 0], x[0, 2])


@pytest.mark.parametrize('image,encoding,match', [
    (IMG, 'yuv422', "must be one of"),
    (IMG.astype(np.uint16), 'rgb8', 'must be uint8'),
    (IMG[:, :, 0], 'rgb8', r'must be \(H, W, 3\)'),
    (IMG, 'mono8', r'must be \(H, W\)'),
])
def test_bad_images_are_named(image, encoding, match):
    with pytest.raises(ValueError, match=match):
        Preprocessor(ModelSpec())(image, encoding)


def _blocks(height: int, width: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An image made of k x k blocks of one random colour each, and the (height / k, width / k) colours."""
    colours = np.random.default_rng(seed).integers(0, 256, (height // k, width // k, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, k, axis=0), k, axis=1), colours


@pytest.mark.parametrize('camera, k, top', [((360, 640), 2, 30), ((720, 1280), 4, 30), ((480, 640), 2, 0)])
def test_16_9_images_are_letterboxed_with_mirrored_padding(camera, k, top):
    spec = ModelSpec(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    image, colours = _blocks(*camera, k, seed=k)
    x = Preprocessor(spec)(image, 'rgb8')
    rows = colours.shape[0]
    assert x.shape == (1, 3, 240, 320)
    # Each content pixel averages one k x k block of one colour: (colour / 255 - mean) / std.
    expected = (colours / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(x[0, :, top:top + rows].transpose(1, 2, 0), expected, atol=1e-5)
    # The padding mirrors the content across its edge rows (30 and 209): row 0 is row 60, row 29 row 31,
    # row 210 row 208, row 239 row 179.
    for pad_row in range(top):
        np.testing.assert_array_equal(x[0, :, pad_row], x[0, :, 2 * top - pad_row], err_msg=f'row {pad_row}')
    last = top + rows - 1
    for pad_row in range(top + rows, 240):
        np.testing.assert_array_equal(x[0, :, pad_row], x[0, :, 2 * last - pad_row], err_msg=f'row {pad_row}')


def test_portrait_and_very_wide_images_mirror_as_often_as_needed():
    from student_trt.preprocess import mirror_indices
    # numpy's 'reflect' padding, by hand: content 2..5 of 9 -> 4 3 | 2 3 4 5 | 4 3 2
    np.testing.assert_array_equal(mirror_indices(2, 4, 9), [4, 3, 2, 3, 4, 5, 4, 3, 2])
    np.testing.assert_array_equal(mirror_indices(3, 1, 5), [3, 3, 3, 3, 3])
    portrait = RNG.integers(0, 256, (640, 480, 3), dtype=np.uint8)  # 180 columns in the middle of 320
    x = Preprocessor(ModelSpec())(portrait, 'rgb8')
    np.testing.assert_array_equal(x[0, :, :, 0], x[0, :, :, 140])  # column 0 mirrors 140 across 70
    np.testing.assert_array_equal(x[0, :, :, 319], x[0, :, :, 179])  # 319 mirrors 179 across 249
    strip = RNG.integers(0, 256, (10, 100, 3), dtype=np.uint8)  # 32 rows of content, 104 above and below
    x = Preprocessor(ModelSpec())(strip, 'rgb8')
    # 104 rows above the first content row: 62 (31 up and back) returns to it, 42 more fold at row 31 to 20.
    np.testing.assert_array_equal(x[0, :, 0], x[0, :, 104 + 20])


def test_a_non_whole_scale_is_bilinear_inside_the_letterbox():
    image = RNG.integers(0, 256, (480, 848, 3), dtype=np.uint8)
    spec = ModelSpec()
    x = Preprocessor(spec)(image, 'rgb8')
    ref = (torch_resize(image, 181, 320, 'bilinear') / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(x[0, :, 29:210].transpose(1, 2, 0), ref, atol=1e-3)


def test_out_is_reused_and_checked():
    pre = Preprocessor(ModelSpec())
    out = np.full((1, 3, 240, 320), np.nan, np.float32)
    for camera in ((480, 640), (360, 640), (480, 640)):  # a 4:3 frame after a 16:9 one: no padding left over
        image = RNG.integers(0, 256, (*camera, 3), dtype=np.uint8)
        assert pre(image, 'rgb8', out) is out
        np.testing.assert_array_equal(out, Preprocessor(ModelSpec())(image, 'rgb8'))
    with pytest.raises(ValueError, match=r'out must be float32 \(1, 3, 240, 320\), got float64'):
        pre(IMG, 'rgb8', np.zeros((1, 3, 240, 320)))
    batch = pre.batch([IMG, IMG[::-1].copy()])
    np.testing.assert_array_equal(batch[1:], pre(IMG[::-1].copy()))


@pytest.mark.parametrize('camera', [(480, 640), (360, 640), (720, 1280), (480, 848)])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgra8', 'mono8'])
def test_a_frame_allocates_no_large_array(camera, encoding):
    """With ``out`` given, a frame allocates less than 128 KiB (the input image is 0.9-2.8 MB; glibc serves
    blocks from 128 KiB up with fresh, page-faulting mmaps)."""
    channels = {'rgb8': 3, 'bgra8': 4, 'mono8': 1}[encoding]
    image = RNG.integers(0, 256, (*camera, channels), dtype=np.uint8)
    image = image[:, :, 0].copy() if encoding == 'mono8' else image
    pre = Preprocessor(ModelSpec())
    out = np.empty(pre.shape, np.float32)
    pre(image, encoding, out)  # the first frame of a size makes the scratch arrays
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        pre(image, encoding, out)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 128 * 1024, f'{camera} {encoding}: a frame allocated up to {peak} bytes (expected < 128 kB)'


def test_metadata_round_trip_and_errors():
    spec = ModelSpec(height=120, width=160, class_names=('a', 'b'), precision='int8',
                     calibration='8 images from calib/')
    props = spec.to_metadata()
    assert all(k.startswith('rc_perception.') for k in props)
    assert ModelSpec.from_metadata({**props, 'producer': 'x'}) == spec
    with pytest.raises(ValueError, match='no rc_perception metadata'):
        ModelSpec.from_metadata({'producer': 'pytorch'}, source='foo.onnx')
    with pytest.raises(ValueError, match='unknown model spec field'):
        ModelSpec.from_dict({'height': 10, 'colour': 'rgb'})
    with pytest.raises(ValueError, match='depth_min < depth_max'):
        ModelSpec(depth_min=5.0, depth_max=1.0)
