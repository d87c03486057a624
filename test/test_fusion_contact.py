"""ground.ground_contact: student obstacles on the floor brought to the plane's depth at their foot."""

import numpy as np

from depth_fusion.fusion import FusionConfig
from depth_fusion.ground import GroundPlane, ground_contact

PLANE = GroundPlane(0.0, 0.02, -1.0, 1000)  # 1/z = 0.02 v - 1: horizon at row 50
H, W = 100, 4


def _scene(face_scale=1.2, foot_row=80, tof_floor=True):
    """Floor on every row below ``foot_row`` (ToF), a face at the floor's depth at the contact above it
    (student, ``face_scale`` too far)."""
    inv = PLANE.inverse_depth((H, W))
    depth = np.where(inv > 0, 1.0 / np.maximum(inv, 1e-6), np.nan).astype(np.float32)
    source = np.full((H, W), 2, np.uint8)
    source[foot_row + 1:] = 1 if tof_floor else 2
    z = np.float32(2.0) / (inv[foot_row, 0] + inv[foot_row + 1, 0])  # the contact, between the two rows
    depth[60:foot_row + 1] = z * np.float32(face_scale)
    return depth, source, z


def test_face_too_far_is_brought_to_its_foot():
    depth, source, z = _scene(1.2)
    raw = depth.copy()
    tof = depth[source == 1].copy()
    moved = ground_contact(depth, raw, source, PLANE)
    assert moved == 21 * W
    np.testing.assert_allclose(depth[60:81], z, rtol=1e-5)
    assert np.array_equal(depth[source == 1], tof)  # ToF pixels never change


def test_face_too_near_is_left_alone():  # ratio > 1: never farther
    depth, source, _ = _scene(0.8)
    before = depth.copy()
    assert ground_contact(depth, before.copy(), source, PLANE) == 0
    assert np.array_equal(depth, before, equal_nan=True)


def test_overhang_without_foot_is_untouched():  # nothing but unknown pixels below the face
    depth, source, _ = _scene(1.2)
    source[81:] = 0
    before = depth.copy()
    assert ground_contact(depth, before.copy(), source, PLANE) == 0
    assert np.array_equal(depth, before, equal_nan=True)


def test_ratio_below_the_bound_is_untouched():
    depth, source, _ = _scene(2.5)
    before = depth.copy()
    assert ground_contact(depth, before.copy(), source, PLANE) == 0


def test_default_is_off_and_no_plane_moves_nothing():
    assert FusionConfig().ground_contact is False
    from depth_fusion.fusion import Fuser
    student = np.full((40, 40), 2.0, np.float32)
    tof = np.full((40, 40), 1.5, np.float32)  # a wall facing the camera: no floor plane
    res = Fuser(FusionConfig(ground_contact=True), compiled=False).fuse(student, tof)
    assert res.ground is None and res.contact_pixels == 0
