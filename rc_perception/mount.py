"""Where the camera sits on the robot: REP 103 mount pose, and the fixed rotation to its optical frame.

Two transforms, as robot_state_publisher and vendor camera drivers publish them:

* ``base_frame -> camera_link``: the camera body, x forward, y left, z up (REP 103), at ``x, y, z``
  metres with ``roll, pitch, yaw`` radians (fixed-axis roll about x, then pitch about y, then yaw about z,
  as tf2's static_transform_publisher reads them: ``R = Rz(yaw) Ry(pitch) Rx(roll)``). A positive pitch
  turns the camera's nose **down**; a positive yaw turns it left.
* ``camera_link -> <camera>_optical_frame``: the fixed optical rotation (z forward, x right, y down; REP 103
  "_optical" suffix), ``roll = -pi/2, pitch = 0, yaw = -pi/2``, no translation.

Pure numpy; the launch file and the offline costmap evaluator both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['OPTICAL_RPY', 'CameraMount', 'rpy_matrix', 'transform']

#: camera_link -> optical frame, (roll, pitch, yaw).
OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (tf2 / REP 103 fixed-axis roll, pitch, yaw)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def transform(rotation: np.ndarray, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 homogeneous transform (parent <- child) from a 3x3 rotation and a translation."""
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


@dataclass(frozen=True)
class CameraMount:
    """The camera body's pose in the robot's base frame (REP 103; see the module docstring)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def base_to_link(self) -> np.ndarray:
        """4x4 transform base_frame <- camera_link."""
        return transform(rpy_matrix(self.roll, self.pitch, self.yaw), (self.x, self.y, self.z))

    @staticmethod
    def link_to_optical() -> np.ndarray:
        """4x4 transform camera_link <- optical frame (the fixed optical rotation)."""
        return transform(rpy_matrix(*OPTICAL_RPY))

    def base_to_optical(self) -> np.ndarray:
        """4x4 transform base_frame <- optical frame: maps optical-frame points into the base frame."""
        return self.base_to_link() @ self.link_to_optical()
