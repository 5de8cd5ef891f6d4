"""ament_python package: `colcon build` under ROS 2, `pip install -e .` anywhere else."""
from glob import glob

from setuptools import setup

PACKAGE = "split_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    # training/ lives at the top level (product layout) but is installed as
    # split_perception.training, never as a bare `training` package.
    packages=[PACKAGE, f"{PACKAGE}.training", f"{PACKAGE}.nodes", f"{PACKAGE}.models", f"{PACKAGE}.backends",
              f"{PACKAGE}.frames"],
    package_dir={
        PACKAGE: PACKAGE,
        f"{PACKAGE}.training": "training",
    },
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json", "weights/*.onnx"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=True,
    maintainer="split_perception developers",
    maintainer_email="dev@split-perception.invalid",
    description="Unsupervised object-centric perception (SPLIT-SPAIR, MONet-RN50*) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "split-perception = split_perception.cli:main",
            "detector_node = split_perception.nodes.detector_node:main",
            "segmenter_node = split_perception.nodes.segmenter_node:main",
            "camera_source = split_perception.nodes.camera_source:main",
            "scene_recorder = split_perception.nodes.scene_recorder:main",
        ],
    },
)
