"""replay_node: feed the pipeline from recordings, as the camera would.

Publishes a dataset folder or a rosbag2 (see ``rc_offline.replay_sources``) on one set of topics
(relative names; remap or namespace as on the robot), sensor-data QoS:

    camera/rgb (sensor_msgs/Image, rgb8), camera/depth (16UC1 mm or 32FC1 m),
    camera/depth/confidence (mono8/mono16/32FC1), camera/camera_info (sensor_msgs/CameraInfo)
    /clock (rosgraph_msgs/Clock, with ``publish_clock``): each event's header stamp

A dataset's frames go out at ``rate`` Hz, each with one fresh stamp and ``frame_id``. A bag's messages go
out at their recorded timing divided by ``playback_speed``, with their header stamps moved to now
(``restamp``: the first message's stamp becomes the replay's start and the others follow at the playback
speed, so stamps stay near the time they go out and messages stamped alike, such as a ToF depth and its
confidence, stay alike) or kept as recorded (``restamp: false``; then publish /clock and set use_sim_time
on the pipeline's nodes). With ``loop`` the source starts again at its end (restamping: from a new now, so
stamps keep increasing).

The demo drives ``Replayer`` directly; ``replay_node`` wraps it as a node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time as RosTime
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header

from rc_offline.replay_sources import MSG_TYPES, TOPICS, BagSource, DatasetSource, ReplayEvent, open_source
from rc_perception import qos
from rc_perception.node_support import Finished, RateMeter, StartupError, main_for, startup_params
from rc_perception.params import ParamSpec

__all__ = ['BagSource', 'DatasetSource', 'ReplayEvent', 'ReplayNode', 'Replayer', 'open_source']


class Replayer:
    """Publishes a source's events on ``node`` at their times, from a thread of its own.

    ``on_publish(event, stamp)`` is called after each event is published, with the header stamp used.
    ``done`` is set when the replay ends; ``error`` then holds the exception that ended it early, if any
    (also logged). With ``publish_clock`` each event's stamp is first published on /clock (best effort,
    keep last 1, as ros2 bag play does), for nodes running with use_sim_time.
    """

    def __init__(self, node: Node, source, frame_id: str = 'camera_color_optical_frame',
                 restamp: bool = True, loop: bool = False,
                 on_publish: Callable[[ReplayEvent, Time], None] | None = None,
                 publish_clock: bool = False) -> None:
        self.node = node
        self.source = source
        self.frame_id = frame_id
        self.restamp = restamp
        self.loop = loop
        self.on_publish = on_publish
        self.publishers = {stream: node.create_publisher(MSG_TYPES[stream], topic, qos.sensor_data(),
                                                         qos_overriding_options=qos.overridable())
                           for stream, topic in TOPICS.items()}
        self._clock_pub = node.create_publisher(
            Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)) \
            if publish_clock else None
        self.published = RateMeter()
        self.done = threading.Event()
        #: Why the replay stopped early (None: it ran to the end, or was stopped).
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._speed = getattr(source, 'speed', 1.0)
        #: Restamping: the current pass's first recorded stamp, and the ROS time (ns) its pass began.
        self._first_recorded_ns: int | None = None
        self._pass_start_ns = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name='replay', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _stamp(self, event: ReplayEvent) -> Time:
        """Datasets: now. Bags: the recorded stamp, or restamped onto this pass's timeline: the first
        message's stamp becomes the time the pass began and the others follow at the playback speed
        (recorded differences divided by it). Stamps are thus the times messages are due, never later than
        they go out (and increasing across loops), and messages stamped alike stay alike."""
        if event.recorded_stamp is None:
            return self.node.get_clock().now().to_msg()
        if not self.restamp:
            return event.recorded_stamp
        recorded_ns = RosTime.from_msg(event.recorded_stamp).nanoseconds
        if self._first_recorded_ns is None:
            self._first_recorded_ns = recorded_ns
        since_first = round((recorded_ns - self._first_recorded_ns) / self._speed)
        return RosTime(nanoseconds=self._pass_start_ns + since_first).to_msg()

    def publish(self, event: ReplayEvent) -> Time:
        stamp = self._stamp(event)
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        for stream, msg in event.messages.items():
            if event.recorded_stamp is None:
                msg.header = Header(stamp=stamp, frame_id=self.frame_id)
            else:
                msg.header.stamp = stamp
            self.publishers[stream].publish(msg)
        self.published.tick()
        if self.on_publish is not None:
            self.on_publish(event, stamp)
        return stamp

    def _run(self) -> None:
        try:
            while self._replay_pass() and self.loop:
                pass
        except Exception as exc:  # an unreadable frame or message ends the replay: say so, do not vanish
            self.error = exc
            if not self._stop.is_set():
                self.node.get_logger().error(
                    f'replay stopped after {self.published.count} events: {type(exc).__name__}: {exc}')
        finally:
            self.done.set()

    def _replay_pass(self) -> bool:
        """Publish the source's events once, each at its offset; False when stopped or empty."""
        start = None
        self._first_recorded_ns = None
        for event in self.source.events():
            if start is None:  # the clock starts with the first event (opening a bag takes a while)
                start = time.monotonic() - event.offset
                self._pass_start_ns = self.node.get_clock().now().nanoseconds - round(event.offset * 1e9)
            delay = start + event.offset - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return False
            if self._stop.is_set():
                return False
            self.publish(event)
        return start is not None and not self._stop.is_set()  # an empty source does not loop


# ------------------------------------------------------------------------------------------------- node

PARAMS = (
    ParamSpec('source', '', 'Dataset folder (rgb/, tof/, confidence/, camera.yaml) or rosbag2 (folder or '
              '.mcap/.db3 file) to replay.', read_only=True),
    ParamSpec('rate', 15.0, 'Frames per second for a dataset folder.', min=0.1, max=1000.0, read_only=True),
    ParamSpec('playback_speed', 1.0, 'Speed factor of a bag relative to its recorded timing (2: twice as '
              'fast; restamped header stamps follow the same pace).', min=0.01, max=100.0, read_only=True),
    ParamSpec('loop', False, 'Start again at the end (restamping: from a new now).', read_only=True),
    ParamSpec('restamp', True, 'Bags: move header stamps to now (the first becomes the start of the replay, '
              'the others follow at playback_speed); false: keep the recorded stamps (then set publish_clock '
              'here and use_sim_time downstream).', read_only=True),
    ParamSpec('publish_clock', False, 'Publish each event\'s header stamp on /clock (rosgraph_msgs/Clock) '
              'before its messages, for nodes with use_sim_time.', read_only=True),
    ParamSpec('wait_for_subscribers', 0, 'Before the first message, wait until every replayed topic has at '
              'least this many subscriptions (0: start at once). 1 when a recorder or the pipeline starts '
              'alongside: otherwise the frames sent before discovery has matched them are lost.', min=0,
              max=100, read_only=True),
    ParamSpec('exit_when_done', False, 'Exit (code 0) when the replay has run to its end, as ros2 bag play '
              'does; false: keep the topics up, like a camera driver. Ignored with loop.', read_only=True),
    ParamSpec('frame_id', 'camera_color_optical_frame', 'frame_id of dataset frames (bags keep theirs).',
              read_only=True),
    ParamSpec('bag_rgb_topic', '/camera/rgb', 'RGB topic in the bag.', read_only=True),
    ParamSpec('bag_depth_topic', '/camera/depth', 'ToF depth topic in the bag.', read_only=True),
    ParamSpec('bag_confidence_topic', '/camera/depth/confidence', 'ToF confidence topic in the bag.',
              read_only=True),
    ParamSpec('bag_camera_info_topic', '/camera/camera_info', 'CameraInfo topic in the bag.', read_only=True),
)


class ReplayNode(Node):
    """Replays a dataset folder or a rosbag2 on the camera topics (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('replay_node', **kwargs)
        self.replayer: Replayer | None = None
        self.params = startup_params(self, PARAMS)
        p = self.params.values
        try:
            source = self._open_source(p)
        except StartupError:
            self.destroy_node()
            raise
        for topic in getattr(source, 'missing', []):
            self.get_logger().warning(f'bag {p.source} has no topic {topic}; not replaying it')
        self.replayer = Replayer(self, source, frame_id=p.frame_id, restamp=p.restamp, loop=p.loop,
                                 publish_clock=p.publish_clock)
        unit = 'frames' if isinstance(source, DatasetSource) else 'messages'
        self.get_logger().info(f'replaying {len(source)} {unit} from {p.source}')
        #: Publishers whose subscriptions are counted before the start (the topics the source has).
        self._awaited = [self.replayer.publishers[s]
                         for s in getattr(source, 'topics', self.replayer.publishers)]
        self._waited = 0
        if p.wait_for_subscribers:
            self._start_timer = self.create_timer(0.1, self._start_when_subscribed)
        else:
            self.replayer.start()
        self._done_timer = self.create_timer(0.5, self._check_done)

    def _start_when_subscribed(self) -> None:
        want = self.params.values.wait_for_subscribers
        short = sorted(pub.topic_name for pub in self._awaited if pub.get_subscription_count() < want)
        if short:
            self._waited += 1
            if self._waited % 50 == 1:  # at once, then every 5 s
                self.get_logger().info(f"waiting for {want} subscription(s) on {', '.join(short)} "
                                       '(wait_for_subscribers) before the first message')
            return
        self._start_timer.cancel()
        self.replayer.start()

    @staticmethod
    def _open_source(p):
        if not p.source:
            raise StartupError('replay_node: set the source parameter to a dataset folder or a rosbag2, '
                               'e.g. --ros-args -p source:=/data/heldout')
        topics = {'rgb': p.bag_rgb_topic, 'depth': p.bag_depth_topic, 'confidence': p.bag_confidence_topic,
                  'camera_info': p.bag_camera_info_topic}
        try:
            return open_source(p.source, p.rate, topics, p.playback_speed)
        except ValueError as exc:
            raise StartupError(f'replay_node: {exc}') from None

    def _check_done(self) -> None:
        if self.replayer.done.is_set():
            if self.replayer.error is None:
                self.get_logger().info(f'replay finished: {self.replayer.published.count} events published')
            self._done_timer.cancel()
            if self.params.values.exit_when_done and self.replayer.error is None:
                raise Finished('replay finished')

    def destroy_node(self) -> None:
        if self.replayer is not None:
            self.replayer.stop()
        super().destroy_node()


main = main_for(ReplayNode)

if __name__ == '__main__':
    main()
