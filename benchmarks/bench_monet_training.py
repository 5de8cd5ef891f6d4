"""MONet training speed: the component-decoder and attention-decoder choices side by side.

    python benchmarks/bench_monet_training.py [--batch 16] [--slots 10] [--steps 6] [--threads 2]

Times full training steps (forward, backward, Adam) of the ResNet18-attention MONet at 64 px,
the configurations interleaved round by round in one process so machine load hits them alike,
and the room scene generator (one batch, in the training thread as the trainer does on <= 2
cores). Prints median step time, steps/s and images/s per configuration and the speed-up
against the first one.
"""
from __future__ import annotations

import argparse
import statistics
import time

CONFIGS = {
    # (decoder_size, upsampling): before this change the decoder drew every slot at 64 px
    "full-resolution decoder, transposed convs": (0, "transposed"),
    "16 px decoder grid, transposed convs": (16, "transposed"),
    "16 px decoder grid, bilinear + refinement (default)": (16, "bilinear"),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--steps", type=int, default=6, help="timed rounds (one step of each configuration per round)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from split_perception.models.monet import Monet, MonetConfig
    from split_perception.training import scenes, trainer

    torch.set_num_threads(args.threads)
    runs = {}
    for name, (decoder_size, upsampling) in CONFIGS.items():
        torch.manual_seed(0)
        model = Monet(MonetConfig(image_size=64, slots=args.slots, attention="resnet18", decoder_size=decoder_size, upsampling=upsampling))
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), [])
    x = torch.rand(args.batch, 3, 64, 64)

    def step(model, opt):
        out = model(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    for model, opt, _ in runs.values():
        step(model, opt)  # warm-up
    for _ in range(args.steps):
        for model, opt, times in runs.values():
            t = time.perf_counter()
            step(model, opt)
            times.append(time.perf_counter() - t)

    print(f"MONet ResNet18 attention, 64 px, K = {args.slots}, batch {args.batch}, {args.threads} threads, "
          f"median of {args.steps} steps")
    base = None
    for name, (_, _, times) in runs.items():
        med = statistics.median(times)
        base = base or med
        print(f"  {name:52s} {med * 1000:7.0f} ms/step  {1 / med:5.2f} steps/s  {args.batch / med:6.1f} images/s  x{base / med:.2f}")

    for kind in ("room", "room_rich"):
        data = trainer.DataConfig(kind="room", image_size=64, min_objects=1, max_objects=6 if kind == "room_rich" else 3,
                                  room={k: v for k, v in vars(scenes.room_kind_config(kind, 64)).items()
                                        if k not in ("image_size", "min_objects", "max_objects")})
        stream = trainer.SceneStream(data, args.batch)
        stream.batch(0)
        t = time.perf_counter()
        for i in range(1, 6):
            stream.batch(i)
        print(f"  scene generation, {kind:9s}: {(time.perf_counter() - t) / 5 * 1000:6.1f} ms per batch of {args.batch}")


if __name__ == "__main__":
    main()
