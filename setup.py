"""ament_python build of rc_perception: four Python packages, one ROS package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'rc_perception'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[
        'rc_perception', 'student_trt*', 'depth_fusion', 'pointcloud_xyz', 'rc_offline*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
        (f'share/{PACKAGE}/models', glob('models/*.pt')),
    ],
    install_requires=['setuptools', 'numpy'],
    # The nodes' needs are package.xml's exec_depends (requirements/runtime.txt); the offline tools' are
    # installed apart (requirements/README.md). The extras name them for pip users.
    extras_require={
        'test': ['pytest'],
        'tools': ['torch', 'onnx', 'onnxscript', 'nvidia-modelopt', 'rosbags', 'pillow', 'matplotlib'],
    },
    zip_safe=True,
    maintainer='rc_perception maintainers',
    maintainer_email='dev@rc-perception.local',
    description='Student depth/segmentation, ToF fusion and point clouds for Nav2 on a small robot.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            # Nodes (rc_perception.composition: signals noted before the heavy imports)
            'student_trt_node = rc_perception.composition:student_trt_node',
            'depth_fusion_node = rc_perception.composition:depth_fusion_node',
            'pointcloud_xyz_node = rc_perception.composition:pointcloud_xyz_node',
            'perception_composed = rc_perception.composition:main',
            'replay_node = rc_offline.replay:main',
            # Offline tools
            'export_trt = rc_offline.export:main',
            'benchmark = rc_offline.benchmark:main',
            'train_student = rc_offline.train:main',
            'finetune_student = rc_offline.finetune:main',
            'calibrate_fusion = rc_offline.calibrate:main',
            'demo = rc_offline.demo:main',
        ],
    },
)
