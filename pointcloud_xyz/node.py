"""pointcloud_xyz_node: depth image + camera info -> x, y, z PointCloud2 for the Nav2 costmap.

Subscribes:
    perception/fused_depth (sensor_msgs/Image, 32FC1 metres or 16UC1/mono16 millimetres), sensor-data QoS
    camera/camera_info (sensor_msgs/CameraInfo): the latest one is used, for any image size (K, or P with
        ``rectified``, scaled to the image's grid) and through its distortion model.
Publishes (the depth image's header):
    perception/fused_depth_points (sensor_msgs/PointCloud2, float32 x, y, z): the readings
    perception/clearing_points (same layout, dense; with ``publish_clearing_cloud``): a point on the ray of
        every pixel beyond range or without a reading, for a Nav2 source with marking false, clearing true
    /diagnostics (diagnostic_msgs/DiagnosticArray): counts, rates, camera model, per-frame latency

Topic names are relative: remap them, or set a namespace, to fit a robot. Each cloud is written straight
into a message reused every frame (codecs.CloudWriter). doc/pointcloud.md is the reference.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from pointcloud_xyz.distortion import Distortion
from pointcloud_xyz.projection import CameraModel, RayGrid, Rays, backproject, clearing_points
from rc_perception import codecs, qos
from rc_perception.depth import DEPTH_ENCODINGS
from rc_perception.latency import LatencyWindow
from rc_perception.node_support import OK, WARN, BadInput, Diagnostics, RateMeter, main_for, startup_params
from rc_perception.params import ParamSpec

DEPTH_TOPIC = 'perception/fused_depth'
INFO_TOPIC = 'camera/camera_info'
CLOUD_TOPIC = 'perception/fused_depth_points'
CLEARING_TOPIC = 'perception/clearing_points'

PARAMS = (
    ParamSpec('range_min', 0.05, 'Depths below this (metres) are left out of the cloud; bound included.',
              min=0.0, max=100.0),
    ParamSpec('range_max', 10.0, 'Depths above this (metres) are left out of the cloud; bound included. '
              'Must exceed range_min.', min=0.0, max=1000.0),
    ParamSpec('skip', 1, 'Decimation: keep the pixels skip * j + skip // 2 of each axis (1 keeps all).',
              min=1, max=64),
    ParamSpec('organized', True,
              'true: an organized H x W cloud with NaN for invalid pixels (is_dense false); '
              'false: only valid points, height 1 (is_dense true).'),
    ParamSpec('rectified', False,
              'false: the depth image is on the camera\'s raw grid: back-project with K through the '
              'distortion model d (plumb_bob, rational_polynomial, equidistant; others refused); '
              'true: it is rectified: back-project with P and ignore d (as image_geometry does).'),
    ParamSpec('veiling_min_angle', 5.0,
              'Veiling points (flying ToF pixels, learned depth smeared across an edge) are left out: a '
              'reading with a nearer reading within veiling_window pixels along its row or column that lies '
              "within this many degrees of its line of sight (laser_filters ScanShadowsFilter's test; 0 keeps"
              ' all). The floor meets the rays at atan(camera height / distance): keep this below '
              "atan(height / the costmap's raytrace_max_range) so that the floor that clears stays (5: "
              'to 2.29 m at 0.2 m).', min=0.0, max=45.0),
    ParamSpec('veiling_window', 2, 'Neighbours up to this many pixels away (of the decimated grid) along the '
              'row and the column are compared by the veiling test.', min=1, max=8),
    ParamSpec('publish_clearing_cloud', False,
              f'Also publish {CLEARING_TOPIC}: a point on the ray of every pixel beyond range_max or '
              'without a reading (NaN, 0, +inf), for a Nav2 source with marking false, clearing true. Off by '
              'default: a pixel without a reading is no proof of free space (dark or glossy obstacles).',
              read_only=True),
    ParamSpec('clearing_distance', 2.0,
              'Clearing points lie this far (metres) from the camera along their rays (nearer when a '
              'beyond-range reading is nearer). Keep it within the Nav2 source\'s raytrace_max_range.',
              min=0.1, max=100.0),
    ParamSpec('clearing_skip', 4, 'Decimation of the clearing rays, as skip (4: rays about 1.6 cm apart per '
              'metre of range on a 320-pixel-wide grid, finer than a 5 cm costmap cell to 3 m).',
              min=1, max=64),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)


def _validate(p) -> str | None:
    if p.range_min >= p.range_max:
        return f'range_min ({p.range_min}) must be smaller than range_max ({p.range_max})'
    return None


def camera_model(info: CameraInfo, width: int, height: int, rectified: bool) -> CameraModel:
    """The camera of a ``width`` x ``height`` depth image described by ``info``.

    Raises:
        ValueError: intrinsics or distortion that cannot serve the image (the message says which).
    """
    intr = codecs.camera_info_intrinsics(info, width, height, rectified)
    distortion = None if rectified else Distortion.from_camera_info(info.distortion_model, info.d)
    return CameraModel(intr, distortion)


class PointCloudXyzNode(Node):
    """Back-projects every depth image with the latest camera intrinsics."""

    def __init__(self, **kwargs) -> None:
        super().__init__('pointcloud_xyz_node', **kwargs)
        self.params = startup_params(self, PARAMS, validate=_validate)
        p = self.params.values
        self._grid = RayGrid()
        self._cloud = codecs.CloudWriter()
        self._clearing = codecs.CloudWriter()
        self._info: CameraInfo | None = None
        self._info_lock = threading.Lock()
        self._rays: Rays | None = None  # of the last published cloud, for diagnostics
        self.bad_input = BadInput(self)
        self.frames_in = RateMeter()
        self.clouds_out = RateMeter()
        self.latency = LatencyWindow(lambda: self.get_clock().now().nanoseconds)
        self._pub = self.create_publisher(PointCloud2, CLOUD_TOPIC, qos.sensor_data(),
                                          qos_overriding_options=qos.overridable())
        self._clearing_pub = None
        if p.publish_clearing_cloud:
            self._clearing_pub = self.create_publisher(PointCloud2, CLEARING_TOPIC, qos.sensor_data(),
                                                       qos_overriding_options=qos.overridable())
        info_sub = self.create_subscription(CameraInfo, INFO_TOPIC, self._on_info, qos.sensor_data(),
                                            qos_overriding_options=qos.overridable())
        depth_sub = self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, qos.sensor_data(),
                                             qos_overriding_options=qos.overridable())
        self._depth_topic, self._info_topic = depth_sub.topic_name, info_sub.topic_name
        self.diagnostics = Diagnostics(self, 'point cloud', self._diagnostics, period=p.diagnostics_period)
        clearing = f' and {self._clearing_pub.topic_name}' if self._clearing_pub else ''
        self.get_logger().info(f'back-projecting {self._depth_topic} with {self._info_topic} -> '
                               f'{self._pub.topic_name}{clearing}')

    def _on_info(self, msg: CameraInfo) -> None:
        with self._info_lock:
            self._info = msg

    def _on_depth(self, msg: Image) -> None:
        timer = self.latency.frame(Time.from_msg(msg.header.stamp).nanoseconds)
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
            model = camera_model(info, depth.shape[1], depth.shape[0], p.rectified)
            rays = self._grid.rays(model, depth.shape[1], depth.shape[0], p.skip)
        except ValueError as exc:  # IntrinsicsError, DistortionError: this CameraInfo cannot serve
            self.bad_input.report(self._depth_topic, f'CameraInfo on {self._info_topic}: {exc}',
                                  'depth image')
            return
        backproject(depth, msg.encoding, rays, range_min=p.range_min, range_max=p.range_max,
                    organized=p.organized, veiling_angle=p.veiling_min_angle, veiling_window=p.veiling_window,
                    out=lambda shape: self._cloud.points(shape, msg.header))
        if self._clearing_pub is not None:
            clearing_rays = self._grid.rays(model, depth.shape[1], depth.shape[0], p.clearing_skip)
            clearing_points(depth, msg.encoding, clearing_rays, range_min=p.range_min, range_max=p.range_max,
                            distance=p.clearing_distance,
                            out=lambda shape: self._clearing.points(shape, msg.header))
        timer.publishing()
        self._pub.publish(self._cloud.msg)
        if self._clearing_pub is not None:
            self._clearing_pub.publish(self._clearing.msg)
        timer.done()
        self._rays = rays
        self.clouds_out.tick()

    def _diagnostics(self):
        with self._info_lock:
            info = self._info
        rays = self._rays
        values = {
            'depth images received': self.frames_in.count,
            'clouds published': self.clouds_out.count,
            'input rate (Hz)': self.frames_in.rate(),
            'output rate (Hz)': self.clouds_out.rate(),
            'dropped': self.bad_input.total,
            'camera info received': info is not None,
            'camera model': describe_model(info, self.params.values.rectified),
            'pixels without a ray': 0 if rays is None or rays.valid is None else int((~rays.valid).sum()),
            'clearing points (last cloud)': self._clearing.msg.width if self._clearing_pub else '-',
            'last drop reason': self.bad_input.last_reason or '-',
            **self.latency.values(),
        }
        if info is None:
            return WARN, 'waiting for camera info', values
        if self.frames_in.count and self.bad_input.total and self.clouds_out.count == 0:
            return WARN, 'every depth image so far was dropped', values
        return OK, 'publishing', values


def describe_model(info: CameraInfo | None, rectified: bool) -> str:
    """How the node reads ``info``, for /diagnostics: e.g. ``K + plumb_bob d`` or ``P (rectified)``."""
    if info is None:
        return '-'
    if rectified:
        return 'P (rectified; d ignored)'
    if not any(info.d):
        return 'K (no distortion)'
    return f"K + {info.distortion_model or 'unnamed'} d"


main = main_for(PointCloudXyzNode)

if __name__ == '__main__':
    main()
