"""pointcloud_xyz_node: depth image + camera info -> x, y, z PointCloud2 for the Nav2 costmap.

Subscribes:
    perception/fused_depth (sensor_msgs/Image, 32FC1 metres or 16UC1 millimetres), sensor-data QoS
    camera/camera_info (sensor_msgs/CameraInfo): the latest one is kept; K is scaled when the depth image
        is an integer-factor resize of the CameraInfo size.
Publishes:
    perception/fused_depth_points (sensor_msgs/PointCloud2, float32 x, y, z, header of the depth image)
    /diagnostics (diagnostic_msgs/DiagnosticArray)

Topic names are relative: remap them, or set a namespace, to fit a robot.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from pointcloud_xyz.projection import RayGrid, backproject
from rc_perception import codecs, qos
from rc_perception.depth import DEPTH_ENCODINGS
from rc_perception.node_support import OK, WARN, BadInput, Diagnostics, RateMeter, main_for, startup_params
from rc_perception.params import ParamSpec

DEPTH_TOPIC = 'perception/fused_depth'
INFO_TOPIC = 'camera/camera_info'
CLOUD_TOPIC = 'perception/fused_depth_points'

PARAMS = (
    ParamSpec('range_min', 0.05, 'Depths below this (metres) are invalid and left out of the cloud.',
              min=0.0, max=100.0),
    ParamSpec('range_max', 10.0, 'Depths above this (metres) are invalid and left out of the cloud.',
              min=0.0, max=1000.0),
    ParamSpec('skip', 1, 'Decimation: keep every skip-th row and column (1 keeps all pixels).',
              min=1, max=64),
    ParamSpec('organized', True,
              'true: an organized H x W cloud with NaN for invalid pixels (is_dense false); '
              'false: only valid points, height 1 (is_dense true).'),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)


def _validate(p) -> str | None:
    if p.range_min >= p.range_max:
        return f'range_min ({p.range_min}) must be smaller than range_max ({p.range_max})'
    return None


class PointCloudXyzNode(Node):
    """Back-projects every depth image with the latest camera intrinsics."""

    def __init__(self, **kwargs) -> None:
        super().__init__('pointcloud_xyz_node', **kwargs)
        self.params = startup_params(self, PARAMS, validate=_validate)
        self._grid = RayGrid()
        self._info: CameraInfo | None = None
        self._info_lock = threading.Lock()
        self.bad_input = BadInput(self)
        self.frames_in = RateMeter()
        self.clouds_out = RateMeter()
        self._pub = self.create_publisher(PointCloud2, CLOUD_TOPIC, qos.sensor_data(),
                                          qos_overriding_options=qos.overridable())
        info_sub = self.create_subscription(CameraInfo, INFO_TOPIC, self._on_info, qos.sensor_data(),
                                            qos_overriding_options=qos.overridable())
        depth_sub = self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, qos.sensor_data(),
                                             qos_overriding_options=qos.overridable())
        self._depth_topic, self._info_topic = depth_sub.topic_name, info_sub.topic_name
        self.diagnostics = Diagnostics(self, 'point cloud', self._diagnostics,
                                       period=self.params.values.diagnostics_period)
        self.get_logger().info(
            f'back-projecting {self._depth_topic} with {self._info_topic} -> {self._pub.topic_name}')

    def _on_info(self, msg: CameraInfo) -> None:
        with self._info_lock:
            self._info = msg

    def _on_depth(self, msg: Image) -> None:
        self.frames_in.tick()
        with self._info_lock:
            info = self._info
        if info is None:
            self.bad_input.report(self._depth_topic, f'no CameraInfo received yet on {self._info_topic}',
                                  'depth image')
            return
        if msg.encoding not in DEPTH_ENCODINGS:
            self.bad_input.report(
                self._depth_topic, f"unsupported encoding '{msg.encoding}' (expected "
                f"{' or '.join(sorted(DEPTH_ENCODINGS))})", 'depth image')
            return
        p = self.params.values
        try:
            depth = codecs.image_to_array(msg)
        except ValueError as exc:
            self.bad_input.report(self._depth_topic, exc, 'depth image')
            return
        try:
            intr = codecs.camera_info_intrinsics(info, depth.shape[1], depth.shape[0])
        except ValueError as exc:  # IntrinsicsError: the latest CameraInfo cannot serve this image
            self.bad_input.report(self._depth_topic, f'CameraInfo on {self._info_topic}: {exc}',
                                  'depth image')
            return
        points = backproject(depth, msg.encoding, intr, range_min=p.range_min, range_max=p.range_max,
                             skip=p.skip, organized=p.organized, grid=self._grid)
        self._pub.publish(codecs.xyz_to_cloud(points, msg.header))
        self.clouds_out.tick()

    def _diagnostics(self):
        with self._info_lock:
            have_info = self._info is not None
        values = {
            'depth images received': self.frames_in.count,
            'clouds published': self.clouds_out.count,
            'input rate (Hz)': self.frames_in.rate(),
            'output rate (Hz)': self.clouds_out.rate(),
            'dropped': self.bad_input.total,
            'camera info received': have_info,
            'last drop reason': self.bad_input.last_reason or '-',
        }
        if not have_info:
            return WARN, 'waiting for camera info', values
        if self.frames_in.count and self.bad_input.total and self.clouds_out.count == 0:
            return WARN, 'every depth image so far was dropped', values
        return OK, 'publishing', values


main = main_for(PointCloudXyzNode)

if __name__ == '__main__':
    main()
