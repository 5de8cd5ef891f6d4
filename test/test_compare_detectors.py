"""benchmarks/compare_detectors.py, the paired comparison of two detectors on the same scenes."""
import subprocess
import sys
from pathlib import Path

from split_perception import load_detector
from split_perception.preprocessing import WEIGHTS_DIR
from split_perception.training import metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import compare_detectors  # noqa: E402


def test_a_detector_against_itself_differs_by_nothing():
    onnx = str(WEIGHTS_DIR / "split_spair.onnx")
    res = subprocess.run([sys.executable, "benchmarks/compare_detectors.py", onnx, onnx, "-n", "6", "--outside-n", "4",
                          "--outside-seeds", "11"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = {line[:28].strip(): line for line in res.stdout.splitlines()}
    for row in ("solid_unseen", "outside 11 stripes", "mean, project (11 rows)", "mean, outside (5 rows)"):
        assert "+0.000 [+0.000, +0.000]     0     0" in lines[row], res.stdout


def test_a_detector_that_finds_nothing_is_surely_worse_than_the_shipped_one():
    rows = compare_detectors.project_rows(12, 40_000, 48)
    shipped = load_detector()
    pairs = [(compare_detectors.counted_right(lambda img: [], items), compare_detectors.counted_right(shipped, items))
             for items in rows.values()]
    mean, lo, hi = metrics.pooled_difference_interval(pairs)
    assert lo <= mean <= hi < 0  # empty scenes are counted right by both; the rest only by the shipped model
