"""Frame folders: matching by stem, depth conventions, clear errors."""

import numpy as np
import pytest

from rc_offline import dataset


def test_depth_png_round_trip_in_millimetres(tmp_path):
    depth = np.array([[0.5, np.nan], [2.345, 10.0]], np.float32)
    dataset.write_depth(tmp_path / 'd.png', depth)
    back = dataset.read_depth(tmp_path / 'd.png')
    assert back.dtype == np.float32 and np.isnan(back[0, 1])
    np.testing.assert_allclose(back[[0, 1, 1], [0, 0, 1]], [0.5, 2.345, 10.0], atol=5e-4)
    dataset.write_depth(tmp_path / 'd.npy', depth)
    np.testing.assert_array_equal(dataset.read_depth(tmp_path / 'd.npy'), depth)


def test_frames_matched_by_stem_and_missing_kinds_named(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    for stem in ('000001', '000002', '000003'):
        dataset.write_image(tmp_path / 'rgb' / f'{stem}.png', rgb)
    for stem in ('000002', '000003', '000004'):
        dataset.write_depth(tmp_path / 'depth' / f'{stem}.png', np.ones((4, 6), np.float32))
    frames = dataset.frame_stems(tmp_path, ('rgb', 'depth'), optional=('labels',))
    assert [f.stem for f in frames] == ['000002', '000003']
    assert set(frames[0].paths) == {'rgb', 'depth'}
    with pytest.raises(dataset.DatasetError, match=r"has no 'labels/' folder .* found depth, rgb"):
        dataset.frame_stems(tmp_path, ('rgb', 'labels'))


def test_non_image_file_is_named(tmp_path):
    (tmp_path / 'notes.png').write_text('hello')
    with pytest.raises(dataset.DatasetError, match='notes.png: not an image file'):
        dataset.read_rgb(tmp_path / 'notes.png')
    dataset.write_image(tmp_path / 'deep.png', np.zeros((3, 3), np.uint16))
    with pytest.raises(dataset.DatasetError, match='expected an 8-bit colour image'):
        dataset.read_rgb(tmp_path / 'deep.png')


def test_camera_yaml(tmp_path):
    dataset.save_camera(tmp_path, width=320, height=240, fx=250.0, fy=250.0, cx=159.5, cy=119.5)
    assert dataset.load_camera(tmp_path)['fx'] == 250.0
    (tmp_path / 'camera.yaml').write_text('width: 3\n')
    with pytest.raises(dataset.DatasetError, match='lacks height, fx, fy, cx, cy'):
        dataset.load_camera(tmp_path)
