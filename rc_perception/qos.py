"""QoS profiles used by every publisher and subscriber of the package, in one place.

Images and point clouds use the sensor-data profile (best effort, keep last 5, volatile), as camera
drivers and Nav2's costmap observation sources do; a best-effort subscriber also matches reliable
publishers. Every profile can be overridden per topic from a params file through
``qos_overrides.<topic>.<publisher|subscription>.<policy>`` (see config/perception.yaml).

The functions return a new profile on every call: rclpy writes QoS overrides into the profile object it
is given, so a shared profile would carry one topic's override to every entity created after it.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

__all__ = ['diagnostics', 'overridable', 'sensor_data']


def sensor_data() -> QoSProfile:
    """Images, depth, confidence, camera info and point clouds: rclpy's sensor-data profile (a copy)."""
    p = qos_profile_sensor_data
    return QoSProfile(history=p.history, depth=p.depth, reliability=p.reliability, durability=p.durability)


def diagnostics() -> QoSProfile:
    """/diagnostics, as diagnostic_updater publishes it (reliable, keep last 10, volatile)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def overridable() -> QoSOverridingOptions:
    """Allow history, depth, reliability and durability to be overridden from parameters (rclpy's default
    options leave durability out; a latched consumer may want transient local)."""
    return QoSOverridingOptions(policy_kinds=(QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH,
                                              QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY))
