"""Tier 3: the package builds with colcon and installs what a robot needs where ROS tools look for it."""

import os
import shutil
import subprocess
import sys
from glob import glob
from pathlib import Path

import pytest

from ros_harness import REPO

pytestmark = pytest.mark.packaging

EXECUTABLES = [
    'student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node', 'perception_composed', 'replay_node',
    'export_trt', 'benchmark', 'train_student', 'finetune_student', 'calibrate_fusion', 'demo',
]


@pytest.fixture(scope='module')
def install_prefix(tmp_path_factory) -> Path:
    """install/rc_perception of a colcon workspace: the one `make test` built, or a fresh scratch one."""
    ws = os.environ.get('RC_PERCEPTION_COLCON_WS')
    if ws:
        return Path(ws) / 'install' / 'rc_perception'
    colcon = shutil.which('colcon') or str(Path(sys.executable).with_name('colcon'))
    if not os.path.exists(colcon):
        pytest.skip('colcon is not installed (make setup installs it)')
    ws = tmp_path_factory.mktemp('colcon_ws')
    result = subprocess.run(
        [colcon, '--log-base', str(ws / 'log'), 'build', '--base-paths', REPO,
         '--build-base', str(ws / 'build'), '--install-base', str(ws / 'install'), '--symlink-install'],
        cwd=ws, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'colcon build failed:\n{result.stdout}\n{result.stderr}'
    return ws / 'install' / 'rc_perception'


def test_executables_installed_under_lib_package(install_prefix):
    lib = install_prefix / 'lib' / 'rc_perception'
    missing = [exe for exe in EXECUTABLES if not os.access(lib / exe, os.X_OK)]
    assert not missing, f'expected executables {missing} in {lib}, found {sorted(os.listdir(lib))}'


def test_launch_config_and_index_installed_under_share(install_prefix):
    share = install_prefix / 'share' / 'rc_perception'
    assert (share / 'package.xml').is_file()
    index = install_prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    assert (index / 'rc_perception').is_file()
    for pattern, folder in (('launch/*.launch.py', 'launch'), ('config/*.yaml', 'config'),
                            ('config/*.xml', 'config'), ('models/*.pt', 'models')):
        sources = sorted(Path(p).name for p in glob(os.path.join(REPO, pattern)))
        installed = sorted(p.name for p in (share / folder).glob(Path(pattern).name)) \
            if (share / folder).is_dir() else []
        assert installed == sources, f'{pattern}: expected {sources} installed in {share / folder}, ' \
                                     f'found {installed}'
    assert (share / 'config' / 'fastdds_large_messages.xml').is_file()


def test_sourced_workspace_finds_packages_and_share_files(install_prefix):
    """After `source install/setup.bash`, the Python packages import and data files resolve through the
    ament index to the install space."""
    code = ('import rc_perception, student_trt, depth_fusion, pointcloud_xyz.node; '
            'from rc_perception.resources import share_dir; print(share_dir())')
    script = f'source {install_prefix.parent / "setup.bash"} && {sys.executable} -c "{code}"'
    result = subprocess.run(['bash', '-c', script], capture_output=True, text=True, cwd='/')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(install_prefix / 'share' / 'rc_perception'), result.stdout
