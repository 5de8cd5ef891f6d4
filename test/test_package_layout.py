"""What a ROS user gets: package metadata, launch and config files, entry points."""
import ast
import xml.etree.ElementTree as ET
from pathlib import Path

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
    assert "detector_node" in (ROOT / "launch" / "detect.launch.py").read_text()


def test_params_file_parses_and_names_declared_parameters():
    params = yaml.safe_load((ROOT / "config" / "detector.yaml").read_text())["split_spair_detector"]["ros__parameters"]
    node_src = (ROOT / "split_perception" / "nodes" / "detector_node.py").read_text()
    for name in params:
        assert f'declare_parameter("{name}"' in node_src, name


def test_training_is_installed_under_the_package_namespace():
    import split_perception.training.scenes as s

    assert s.__name__ == "split_perception.training.scenes"
    setup_src = (ROOT / "setup.py").read_text()
    assert '"split_perception.training": "training"' in setup_src.replace("f\"{PACKAGE}.training\"", '"split_perception.training"').replace("PACKAGE", "split_perception") or "package_dir" in setup_src
