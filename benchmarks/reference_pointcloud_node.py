#!/usr/bin/env python3
"""The yardstick for bench_pointcloud.py: depth -> organized x, y, z cloud in plain numpy, as a newcomer
would write it (no cached rays, no reused buffers), with the package's Fast DDS profile and sensor-data QoS.

Usage: reference_pointcloud_node.py CLOUD_TOPIC [--ros-args ...]  (32FC1 depth of the CameraInfo's size)
"""

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data as QOS
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from rc_perception.fastdds import apply_large_message_profile

FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate('xyz')]


class ReferenceNode(Node):
    def __init__(self, cloud_topic: str) -> None:
        super().__init__('reference_pointcloud_node')
        self.k = None
        self.pub = self.create_publisher(PointCloud2, cloud_topic, QOS)
        self.create_subscription(CameraInfo, 'camera/camera_info', self.on_info, QOS)
        self.create_subscription(Image, 'perception/fused_depth', self.on_depth, QOS)

    def on_info(self, msg: CameraInfo) -> None:
        self.k = msg.k

    def on_depth(self, msg: Image) -> None:
        if self.k is None or msg.encoding != '32FC1':
            return
        fx, cx, fy, cy = self.k[0], self.k[2], self.k[4], self.k[5]
        z = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)
        z = np.where((z >= 0.05) & (z <= 10.0), z, np.nan).astype(np.float32)
        x = (np.arange(msg.width, dtype=np.float32) - cx) / fx * z
        y = (np.arange(msg.height, dtype=np.float32)[:, None] - cy) / fy * z
        points = np.stack([x, y, z], axis=-1).astype(np.float32)
        cloud = PointCloud2(header=msg.header, height=msg.height, width=msg.width, fields=FIELDS,
                            is_bigendian=False, point_step=12, row_step=12 * msg.width, is_dense=False)
        cloud.data = points.tobytes()
        self.pub.publish(cloud)


def main() -> None:
    apply_large_message_profile()
    rclpy.init(args=sys.argv)
    node = ReferenceNode(remove_ros_args(sys.argv)[1])
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
