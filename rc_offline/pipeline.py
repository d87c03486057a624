"""Run the three pipeline nodes as the launch file does, on machines without `ros2 launch`.

Same executables (one process each), the same params file (config/perception.yaml by default), the same
default topic names, and the same Fast DDS large-message profile (the nodes apply it themselves). What
runs in `make demo` is therefore what runs on the car, minus the launch tooling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from rc_perception.resources import share_file

__all__ = ['NODES', 'NodeProcesses', 'default_params_file', 'keep_discovery_local']

#: (node name, module) in pipeline order.
NODES = (
    ('student_trt_node', 'student_trt.node'),
    ('depth_fusion_node', 'depth_fusion.node'),
    ('pointcloud_xyz_node', 'pointcloud_xyz.node'),
)


def default_params_file() -> Path:
    return share_file('config', 'perception.yaml')


def keep_discovery_local(environ: MutableMapping[str, str] | None = None) -> None:
    """Keep DDS discovery on this host unless the user chose otherwise (a demo must not talk to a robot
    on the network): ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Jazzy and newer) or ROS_LOCALHOST_ONLY=1
    (Humble, Iron). Call before rclpy.init(); processes started afterwards inherit it."""
    env = os.environ if environ is None else environ
    if env.get('ROS_DISTRO', '') in ('humble', 'iron'):
        env.setdefault('ROS_LOCALHOST_ONLY', '1')
    else:
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


def _param_arg(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path


class NodeProcesses:
    """The pipeline's node processes; logs go to ``log_dir/<node>.log``.

    Args:
        params_file: YAML with a section per node (the launch files' params_file).
        overrides: node name -> {parameter: value}, applied after the params file (like launch arguments).
        log_dir: where each node's output is written.
        env: environment of the processes (default: this one).
    """

    def __init__(self, params_file: Path, overrides: dict[str, dict] | None = None,
                 log_dir: Path = Path('.'), env: dict[str, str] | None = None,
                 nodes: tuple[tuple[str, str], ...] = NODES) -> None:
        self.params_file = Path(params_file)
        self.overrides = overrides or {}
        self.log_dir = Path(log_dir)
        self.env = env
        self.nodes = nodes
        self.procs: list[_Proc] = []

    def command(self, name: str, module: str) -> list[str]:
        cmd = [sys.executable, '-m', module, '--ros-args', '--params-file', str(self.params_file)]
        for key, value in self.overrides.get(name, {}).items():
            cmd += ['-p', f'{key}:={_param_arg(value)}']
        return cmd

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**(self.env or os.environ), 'PYTHONUNBUFFERED': '1'}
        for name, module in self.nodes:
            log = self.log_dir / f'{name}.log'
            with open(log, 'w') as fh:
                popen = subprocess.Popen(self.command(name, module), stdout=fh, stderr=subprocess.STDOUT,
                                         env=env)
            self.procs.append(_Proc(name, popen, log))

    def exited(self) -> list[tuple[str, int, str]]:
        """Nodes that have stopped: (name, exit code, last lines of their log)."""
        return [(p.name, p.popen.returncode, self.tail(p.name))
                for p in self.procs if p.popen.poll() is not None]

    def tail(self, name: str, lines: int = 8) -> str:
        log = self.log_dir / f'{name}.log'
        return '\n'.join(log.read_text(errors='replace').splitlines()[-lines:]) if log.exists() else ''

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGINT every node (as ros2 launch does), wait, kill what is left; returns exit codes."""
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGINT)
        codes = {}
        for p in self.procs:
            try:
                codes[p.name] = p.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                codes[p.name] = p.popen.wait()
        return codes
