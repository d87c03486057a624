"""rc_perception.mount: REP 103 camera mount and the optical rotation, against hand-worked axes."""

import math

import numpy as np
import pytest

from rc_perception.mount import CameraMount, rpy_matrix


def optical_axis(mount: CameraMount) -> np.ndarray:
    """The optical z axis (the viewing direction) expressed in the base frame."""
    return mount.base_to_optical()[:3, :3] @ np.array([0.0, 0.0, 1.0])


def test_level_camera_looks_forward_with_image_right_and_down():
    rot = CameraMount().base_to_optical()[:3, :3]
    np.testing.assert_allclose(rot @ [0, 0, 1], [1, 0, 0], atol=1e-12)   # optical z = base x (forward)
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # optical x = base -y (right)
    np.testing.assert_allclose(rot @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # optical y = base -z (down)


@pytest.mark.parametrize('degrees', [3.0, 10.0, 30.0])
def test_positive_pitch_tilts_the_optical_axis_down(degrees):
    pitch = math.radians(degrees)
    axis = optical_axis(CameraMount(pitch=pitch))
    np.testing.assert_allclose(axis, [math.cos(pitch), 0.0, -math.sin(pitch)], atol=1e-12)
    assert axis[2] < 0, f'pitch {degrees} deg should look down, optical axis {axis}'
    # A tilt about y keeps the image rows level: optical x (image right) stays horizontal.
    right = CameraMount(pitch=pitch).base_to_optical()[:3, :3] @ [1, 0, 0]
    np.testing.assert_allclose(right, [0, -1, 0], atol=1e-12)


def test_positive_yaw_turns_left_and_roll_spins_about_the_viewing_axis():
    np.testing.assert_allclose(optical_axis(CameraMount(yaw=math.pi / 2)), [0, 1, 0], atol=1e-12)
    rolled = CameraMount(roll=0.3)
    np.testing.assert_allclose(optical_axis(rolled), [1, 0, 0], atol=1e-12)


def test_translation_places_the_optical_origin_and_maps_points():
    mount = CameraMount(x=0.10, y=-0.02, z=0.20, pitch=math.radians(10))
    tf = mount.base_to_optical()
    np.testing.assert_allclose(tf[:3, 3], [0.10, -0.02, 0.20], atol=1e-12)
    # A point 2 m ahead on the optical axis lies 2 m along the tilted axis from the camera.
    p = tf @ np.array([0.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(p[:3], [0.10 + 2 * math.cos(math.radians(10)), -0.02,
                                       0.20 - 2 * math.sin(math.radians(10))], atol=1e-12)


def test_rpy_matrix_is_a_rotation():
    r = rpy_matrix(0.3, -0.2, 1.1)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_the_default_mount_sits_at_the_base_origin_looking_forward():
    mount = CameraMount()
    np.testing.assert_array_equal(mount.base_to_link(), np.eye(4))
    assert (mount.x, mount.y, mount.z, mount.roll, mount.pitch, mount.yaw) == (0.0,) * 6
    np.testing.assert_array_equal(mount.base_to_optical()[:3, 3], [0.0, 0.0, 0.0])
