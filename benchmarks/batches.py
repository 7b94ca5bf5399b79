"""Meta-batches built on the device beside today's host sampling, and their share of a MAML step.

Usage (from the project root)::

    FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.batches [--device cpu|cuda]
        [--threads 2] [--iterations 20] [--steps 5]

``sampling``: seconds to build one meta-batch of the MAML paper's 5-way 1-shot training (32
tasks, 1 query per class, rotations, the ``random`` split's training part): today's path
(``episodes_of_step``, one task after another on the host, copied to the device, then stacked as
the vmap engine stacks them) beside ``data.batches.DeviceEpisodes`` (indices drawn on the host,
images gathered on the device), and the host's drawing alone (``EpisodeSampler.plan``).
``step``: one vmap MAML meta-iteration at those settings (second order, inner lr 0.4, one step)
fed by each, and the share of it that building the batch takes. Both sides run in turns in one
process, so the ratios compare like with like; absolute seconds drift on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from fewshot_cli.algorithms import maml_vmap, registry
from fewshot_cli.algorithms.base import episodes_of_step
from fewshot_cli.algorithms.maml_vmap import stack_episodes
from fewshot_cli.data.batches import DeviceEpisodes
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import load_omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.run.config import TrainConfig

TASKS, WAYS, SHOTS, QUERIES = 32, 5, 1, 1


def timed(device: str, fn, *args):
    """``(result, seconds)`` of ``fn(*args)``, the device's queue drained on both sides."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args)
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def turn(names: list[str], i: int) -> list[str]:
    """``names``, reversed every other time: neither side always runs first."""
    return names if i % 2 else names[::-1]


def bench_sampling(sampler, episodes, device: str, iterations: int) -> dict[str, float]:
    """Median seconds per meta-batch of each way of building it, taking turns."""
    builders = {
        "host (today)": lambda i: stack_episodes(episodes_of_step(sampler, i, TASKS, device)),
        "device": lambda i: episodes.batch(i * TASKS, TASKS),
        "host draw alone": lambda i: [sampler.plan(i * TASKS + t) for t in range(TASKS)],
    }
    for fn in builders.values():  # warm-up: first allocations, lazy initialisation
        fn(0)
    seconds = {name: [] for name in builders}
    for i in range(1, iterations + 1):
        for name in turn(list(builders), i):
            seconds[name].append(timed(device, builders[name], i)[1])
    return {name: statistics.median(s) for name, s in seconds.items()}


def bench_step(sampler, episodes, device: str, steps: int):
    """Median ``(sampling, whole step)`` seconds of a meta-iteration fed by each source, and the
    largest difference of their losses (the same tasks from the same weights: 0 on a CPU)."""
    config = TrainConfig(
        "maml", ways=WAYS, shots=SHOTS, queries=QUERIES, meta_batch=TASKS, engine="vmap"
    ).resolved()
    torch.manual_seed(0)
    base = registry.get("maml").build_model(config).to(device)
    sources = {"host (today)": sampler, "device": episodes}
    models = {name: copy.deepcopy(base) for name in sources}
    optimizers = {
        name: torch.optim.Adam(m.parameters(), lr=config.lr) for name, m in models.items()
    }
    times = {name: ([], []) for name in sources}
    losses = {name: [] for name in sources}

    def build(name: str, iteration: int):
        batch = episodes_of_step(sources[name], iteration, TASKS, device)
        return batch if name == "device" else stack_episodes(batch)  # as the vmap step stacks

    def step(name: str, batch):  # the vmap engine's meta-iteration
        return maml_vmap.meta_step(
            models[name],
            optimizers[name],
            batch,
            config.inner_steps,
            config.inner_lr,
            config.first_order,
        )

    for i in range(steps + 1):  # iteration 0: warm-up
        for name in turn(list(sources), i):
            batch, sampling = timed(device, build, name, i)
            (loss, _), stepping = timed(device, step, name, batch)
            losses[name].append(loss)
            if i:
                times[name][0].append(sampling)
                times[name][1].append(sampling + stepping)
    medians = {name: (statistics.median(s), statistics.median(w)) for name, (s, w) in times.items()}
    return medians, max(abs(a - b) for a, b in zip(*losses.values()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--iterations", type=int, default=20, help="meta-batches timed per way")
    parser.add_argument("--steps", type=int, default=5, help="meta-iterations timed per source")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    torch.set_num_threads(args.threads)
    data = load_omniglot(args.data_root)
    part = meta_dataset(data, make_split(data, "random"), "train")
    sampler = EpisodeSampler(part, WAYS, SHOTS, QUERIES, seed=0, rotate=True, part="train")
    episodes = DeviceEpisodes(sampler, args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads; medians")

    print(f"\nsampling: one meta-batch of {TASKS} {WAYS}-way {SHOTS}-shot tasks, {QUERIES} query")
    sampling = bench_sampling(sampler, episodes, args.device, args.iterations)
    host = sampling["host (today)"]
    print(f"{'':<18}{'s/batch':>10}{'host/this':>11}")
    for name, seconds in sampling.items():
        print(f"{name:<18}{seconds:>10.5f}{host / seconds:>10.2f}x")

    print(f"\nstep: MAML {WAYS}w{SHOTS}s vmap meta-iteration, meta-batch {TASKS}, second order")
    steps, loss_gap = bench_step(sampler, episodes, args.device, args.steps)
    print(f"{'':<18}{'sampling s':>11}{'step s':>9}{'sampling share':>16}")
    for name, (sample_s, whole_s) in steps.items():
        print(f"{name:<18}{sample_s:>11.4f}{whole_s:>9.3f}{sample_s / whole_s:>15.1%}")
    (host_s, host_w), (dev_s, dev_w) = steps["host (today)"], steps["device"]
    print(
        f"sampling host/device {host_s / dev_s:.2f}x; whole step host/device {host_w / dev_w:.3f}x"
    )
    print(f"largest difference of the two sides' losses: {loss_gap:.3g}")


if __name__ == "__main__":
    main()
