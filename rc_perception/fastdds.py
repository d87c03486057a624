"""The large-message Fast DDS profile, applied to the publishing process before rclpy starts.

With Fast DDS's default shared-memory segment (512 KB), best-effort messages larger than about 512 KB
between processes on one host are almost all lost: a 240x320 organized x, y, z cloud is 921,600 bytes.
``config/fastdds_large_messages.xml`` gives the shared-memory transport a 16 MB segment; it is needed
on the publishing side only (a subscriber without it, such as Nav2, receives everything).

Controlled by ``RC_PERCEPTION_FASTDDS_PROFILE``: unset or ``auto`` applies the profile where the RMW is
Fast DDS and no profile file was chosen already; ``off`` leaves the environment alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from rc_perception.resources import share_file

PROFILE_NAME = 'fastdds_large_messages.xml'
#: Fast DDS 3 (Jazzy and newer) reads the first, Fast DDS 2 (Humble, Iron) the second.
PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
FAST_DDS_2_DISTROS = frozenset({'humble', 'iron'})
SWITCH = 'RC_PERCEPTION_FASTDDS_PROFILE'


def profile_path() -> str:
    return str(share_file('config', PROFILE_NAME))


def profile_variable(environ: MutableMapping[str, str] | None = None) -> str:
    """The variable this ROS distribution's Fast DDS reads (setting both makes Fast DDS 3 warn)."""
    env = os.environ if environ is None else environ
    return PROFILE_VARIABLES[1] if env.get('ROS_DISTRO', '') in FAST_DDS_2_DISTROS else PROFILE_VARIABLES[0]


def apply_large_message_profile(environ: MutableMapping[str, str] | None = None) -> str:
    """Point Fast DDS at the shipped profile unless told otherwise; returns a line saying what happened.

    Must run before ``rclpy.init()`` (the participant reads the variables when it is created).
    """
    env = os.environ if environ is None else environ
    switch = env.get(SWITCH, 'auto').strip().lower()
    if switch in ('off', '0', 'false', 'no'):
        return f'Fast DDS large-message profile off ({SWITCH}={env[SWITCH]})'
    rmw = env.get('RMW_IMPLEMENTATION', '')
    if rmw and not rmw.startswith('rmw_fastrtps'):
        return f'Fast DDS large-message profile not used: RMW_IMPLEMENTATION={rmw}'
    for var in PROFILE_VARIABLES:
        if env.get(var):
            return f'Fast DDS profile chosen by the environment: {var}={env[var]}'
    path = profile_path()
    var = profile_variable(env)
    env[var] = path
    return f'Fast DDS large-message profile applied: {var}={path} (set {SWITCH}=off to disable)'
