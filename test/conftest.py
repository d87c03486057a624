"""Test set-up shared by every tier: DDS isolation, and the real-rclpy graph fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Keep the tests' DDS traffic on this host and in a domain of their own, before rclpy is imported.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
# The test process plays the part of an ordinary subscriber (e.g. Nav2): no large-message profile here;
# nodes started as separate processes get it as they would on the robot.
for _var in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
    os.environ.pop(_var, None)

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def ros_graph():
    """A fresh rclpy context with a background executor; torn down after the test."""
    from ros_harness import RosGraph  # rclpy only where a test needs it (the GPU machine has none)

    graph = RosGraph()
    try:
        yield graph
    finally:
        graph.close()
