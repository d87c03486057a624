"""A stand-in for the upstream node: publishes N depth images and camera infos at a fixed rate.

Run as its own process by tests: ``python test/stub_depth_publisher.py FRAMES RATE_HZ WIDTH HEIGHT``.
It waits for a subscriber on the depth topic first, then paces its frames at the camera rate.
"""

import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from rc_perception import codecs, qos
from rc_perception.fastdds import apply_large_message_profile


def main() -> None:
    frames, rate, width, height = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    apply_large_message_profile()  # as the package's own publishers do
    rclpy.init()
    node = Node('stub_depth_publisher')
    depth_pub = node.create_publisher(Image, 'perception/fused_depth', qos.sensor_data())
    info_pub = node.create_publisher(CameraInfo, 'camera/camera_info', qos.sensor_data())
    deadline = time.monotonic() + 30.0
    while depth_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    info = CameraInfo(width=width, height=height)
    info.k = [0.8 * width, 0.0, width / 2 - 0.5, 0.0, 0.8 * width, height / 2 - 0.5, 0.0, 0.0, 1.0]
    depth = np.random.default_rng(0).uniform(0.3, 6.0, (height, width)).astype(np.float32)
    start = time.monotonic()
    try:
        for i in range(frames):
            header = Header(frame_id='camera_optical')
            header.stamp = node.get_clock().now().to_msg()
            info.header = header
            info_pub.publish(info)
            depth_pub.publish(codecs.array_to_image(depth, '32FC1', header))
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        print(f'published {frames} frames', flush=True)
    except KeyboardInterrupt:
        pass  # stopped early (SIGINT from launch), a clean exit
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
