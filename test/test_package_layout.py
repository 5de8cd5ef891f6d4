"""What a ROS user gets: package metadata, launch and config files, entry points."""
import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_declares_runtime_dependencies():
    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot() if e.tag.endswith("depend")}
    for d in ["rclpy", "sensor_msgs", "std_msgs", "std_srvs", "vision_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv"]:
        assert d in deps, d


def test_launch_file_builds_the_detector_node():
    tree = ast.parse((ROOT / "launch" / "detect.launch.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"generate_launch_description", "Node"} <= names | {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    text = (ROOT / "launch" / "detect.launch.py").read_text()
    assert "detector_node" in text and "segmenter_node" in text and "IfCondition" in text


@pytest.mark.parametrize("params, node, module", [("detector.yaml", "split_spair_detector", "detector_node"),
                                                  ("segmenter.yaml", "monet_segmenter", "segmenter_node")])
def test_params_files_parse_and_name_declared_parameters(params, node, module):
    values = yaml.safe_load((ROOT / "config" / params).read_text())[node]["ros__parameters"]
    node_src = (ROOT / "split_perception" / "nodes" / f"{module}.py").read_text()
    assert f'super().__init__("{node}"' in node_src
    for name in values:
        assert f'declare_parameter("{name}"' in node_src, name


def test_launch_file_builds_both_nodes():
    """Build the real LaunchDescription (ament index pointed at this source tree)."""
    launch_ros = pytest.importorskip("launch_ros")
    import os

    from launch.conditions import IfCondition
    from ros_helpers import load_launch_description

    os.environ["AMENT_PREFIX_PATH"] = ""
    _, desc = load_launch_description(ROOT)
    nodes = [e for e in desc.entities if isinstance(e, launch_ros.actions.Node)]
    assert [n.node_executable for n in nodes] == ["detector_node", "segmenter_node"]
    assert isinstance(nodes[1].condition, IfCondition)


def test_training_is_installed_under_the_package_namespace():
    import split_perception.training.scenes as s

    assert s.__name__ == "split_perception.training.scenes"
    setup_src = (ROOT / "setup.py").read_text()
    assert '"split_perception.training": "training"' in setup_src.replace("f\"{PACKAGE}.training\"", '"split_perception.training"').replace("PACKAGE", "split_perception") or "package_dir" in setup_src
