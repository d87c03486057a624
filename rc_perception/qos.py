"""QoS profiles used by every publisher and subscriber of the package, in one place.

Images and point clouds use the sensor-data profile (best effort, keep last 5, volatile), as camera
drivers and Nav2's costmap observation sources do; a best-effort subscriber also matches reliable
publishers. Every profile can be overridden per topic from a params file through
``qos_overrides.<topic>.<publisher|subscription>.<policy>`` (see config/perception.yaml).
"""

from __future__ import annotations

from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions

#: Images, depth, confidence, camera info and point clouds.
SENSOR_DATA: QoSProfile = qos_profile_sensor_data
#: /diagnostics, as diagnostic_updater publishes it (reliable, keep last 10).
DIAGNOSTICS: QoSProfile = QoSProfile(depth=10)


def overridable() -> QoSOverridingOptions:
    """Allow history, depth, reliability and durability to be overridden from parameters."""
    return QoSOverridingOptions.with_default_policies()
