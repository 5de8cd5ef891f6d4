"""`make demo`: the main job on the embedded default data."""
from __future__ import annotations

from pathlib import Path


def run_demo(n_frames: int, out_dir: Path) -> int:
    from split_perception.training import dataset, scenes

    out_dir = Path(out_dir)
    cfg = scenes.MultiObjectConfig(background="checkerboard", palette="test")
    dataset.write_generated_dataset(out_dir / "scenes", cfg, n_frames, seed=0)
    counts = [scenes.generate(cfg, 0, i).count for i in range(n_frames)]
    print(f"generated {n_frames} scenes in {out_dir / 'scenes'}; objects per scene: "
          + ", ".join(f"{c}: {counts.count(c)}" for c in sorted(set(counts))))
    return 0
