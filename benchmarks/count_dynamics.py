"""How fast does SPLIT-SPAIR's object count reach the truth? Prints the count error over a short run.

    python benchmarks/count_dynamics.py [--steps 500] [--warmup 0] [--expected-presence 500] [--anneal 200] [--seed 0]

Trains the count test's small model (hidden 32) from scratch on single-object, solid-background
scenes (the easiest case) and every 100 steps prints the mean |predicted count - 1| on 64 held-out
scenes (posterior means, presence > 0.5) and the training reconstruction MSE. This is the experiment behind the
"a short run moves the count toward the truth" test (test/test_spair_model.py): docs/RESULTS.md
records what it printed with and without expected presence and the decoders' colour path.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=0, help="background-only warm-up steps")
    ap.add_argument(
        "--expected-presence", type=int, default=500, help="steps glimpses are drawn with their presence probability"
    )
    ap.add_argument("--anneal", type=int, default=200, help="count-prior annealing steps")
    ap.add_argument("--pres-bias", type=float, default=-2.0, help="initial presence logit (-2: cells start off)")
    ap.add_argument("--no-colour-path", action="store_true", help="decoders without their colour path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    import torch

    from split_perception.models.spair import SpairConfig, SplitSpair
    from split_perception.training import metrics, scenes
    from split_perception.training.dataset import to_tensor
    from split_perception.training.evaluate import TEST_SEED
    from split_perception.training.trainer import DataConfig, SceneStream

    torch.manual_seed(args.seed)
    cfg = SpairConfig(
        split=True, hidden=32, z_what=8, z_local=4, z_bg=4, bg_warmup_steps=args.warmup,
        count_prior_anneal_steps=args.anneal, count_prior_end=1e-5, pres_init_bias=args.pres_bias,
        expected_presence_steps=args.expected_presence, colour_path=not args.no_colour_path,
    )
    model = SplitSpair(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = SceneStream(DataConfig(backgrounds=("solid",), min_objects=1, max_objects=1, seed=args.seed), batch_size=16)
    held_out = scenes.MultiObjectConfig(min_objects=1, max_objects=1)
    x_test = torch.stack([to_tensor(scenes.generate(held_out, TEST_SEED, i).image) for i in range(64)])

    @torch.no_grad()
    def count_error() -> float:
        model.eval()
        counts = (model(x_test)["pres_prob"] > 0.5).sum(1).tolist()
        model.train()
        return metrics.count_error(counts, [1] * len(counts))

    print(f"step 0: count error {count_error():.2f}")
    start, mses = time.perf_counter(), []
    for step in range(args.steps):
        x = stream.batch(step)
        out = model(x, step=step)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mses.append(float(((out["recon"] - x) ** 2).mean()))
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: count error {count_error():.2f}, train MSE {np.mean(mses[-100:]):.4f}", flush=True)
    print(f"{args.steps} steps in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
