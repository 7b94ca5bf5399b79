"""Episode sampling and training-step speed: our pipeline beside learn2learn's stock path.

Usage (from the project root)::

    FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.run [--only episodes|training]

Both sides run in the same process (training steps in turns), so the printed ratios compare
like with like on a shared machine; absolute seconds drift from run to run.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch
import torch.nn.functional as F

from benchmarks.stock import stock_omniglot, stock_taskset
from fewshot_cli.algorithms import maml, maml_family, protonet
from fewshot_cli.algorithms.backbone import Conv4
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import load_omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.run.config import TrainConfig


def per_second(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def bench_episodes(data_root: str, n: int) -> None:
    # Episode sampling is data loading: one thread per loader on both sides, as in a
    # DataLoader worker (tiny tensor ops only lose time to thread hand-offs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_omniglot(data_root)
    ours_ds = meta_dataset(data, make_split(data, "lake"), "trainval")
    ours_setup = time.perf_counter() - start
    start = time.perf_counter()
    stock_ds = stock_omniglot(data_root)
    stock_setup = time.perf_counter() - start
    print(
        f"set-up: ours {ours_setup:.2f} s (cached tensors), stock {stock_setup:.2f} s (decodes every image)"
    )
    print(f"{'episode':<22}{'ours ep/s':>12}{'stock ep/s':>12}{'ratio':>9}")
    for ways, shots, queries in ((5, 1, 15), (60, 5, 5)):
        ours = EpisodeSampler(ours_ds, ways, shots, queries, seed=0)
        stock = stock_taskset(stock_ds, ways, shots, queries)
        ours_rate = per_second(ours.__getitem__, n)
        stock_rate = per_second(lambda i, stock=stock: stock.sample(), max(3, n // 10))
        label = f"{ways}-way {shots}-shot {queries}q"
        print(f"{label:<22}{ours_rate:>12.1f}{stock_rate:>12.1f}{ours_rate / stock_rate:>8.1f}x")
    torch.set_num_threads(threads)


def stock_maml_iteration(learner, optimizer, taskset, ways, shots, meta_batch, steps):
    """One meta-iteration written as learn2learn's examples/vision/maml_omniglot.py does it."""
    optimizer.zero_grad()
    for _ in range(meta_batch):
        data, labels = taskset.sample()
        # The example splits each task into adaptation and evaluation samples with a mask.
        adaptation = torch.arange(data.size(0)) % (data.size(0) // ways) < shots
        clone = learner.clone()
        for _ in range(steps):
            clone.adapt(F.cross_entropy(clone(data[adaptation]), labels[adaptation]))
        loss = F.cross_entropy(clone(data[~adaptation]), labels[~adaptation])
        loss.backward()
    for p in learner.parameters():
        p.grad.mul_(1.0 / meta_batch)
    optimizer.step()


def stock_protonet_episode(model, optimizer, taskset, ways, shots):
    """One ProtoNet episode in the style of learn2learn's protonet examples (PIL-fed data)."""
    data, labels = taskset.sample()
    per_class = data.size(0) // ways
    support_mask = torch.arange(data.size(0)) % per_class < shots
    embeddings = model(data)
    support, query = embeddings[support_mask], embeddings[~support_mask]
    prototypes = support.reshape(ways, shots, -1).mean(1)
    logits = -((query.unsqueeze(1) - prototypes.unsqueeze(0)) ** 2).sum(-1)
    loss = F.cross_entropy(logits, labels[~support_mask])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def alternate(ours, stock, n: int) -> tuple[float, float]:
    """Mean seconds per call of ``ours`` and ``stock``, called in turns.

    Taking turns spreads whatever else the shared machine does over both sides alike.
    """
    totals = [0.0, 0.0]
    for i in range(n):
        for side, fn in enumerate((ours, stock)):
            start = time.perf_counter()
            fn(i)
            totals[side] += time.perf_counter() - start
    return totals[0] / n, totals[1] / n


def bench_training(data_root: str, iterations: int) -> None:
    data = load_omniglot(data_root)
    train_ds = meta_dataset(data, make_split(data, "lake"), "train")
    stock_ds = stock_omniglot(data_root)
    print(f"{'step':<40}{'ours s/it':>11}{'stock s/it':>12}{'ratio':>9}")

    config = TrainConfig(
        "maml", ways=5, shots=1, queries=15, inner_lr=0.4, inner_steps=1, meta_batch=32
    ).resolved()
    torch.manual_seed(0)
    model = maml_family.network(5)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    sampler = EpisodeSampler(train_ds, 5, 1, 15, seed=0)
    torch.manual_seed(0)
    stock_learner = maml.build_learner(maml_family.network(5), 0.4)
    stock_opt = torch.optim.Adam(stock_learner.parameters(), 1e-3)
    stock_tasks = stock_taskset(stock_ds, 5, 1, 15)
    ours, stock = alternate(
        lambda i: maml.ALGORITHM.train_step(model, optimizer, sampler, i, config),
        lambda i: stock_maml_iteration(stock_learner, stock_opt, stock_tasks, 5, 1, 32, 1),
        iterations,
    )
    print(
        f"{'MAML 5w1s meta-batch 32, second order':<40}{ours:>11.3f}{stock:>12.3f}{stock / ours:>8.2f}x"
    )

    config = TrainConfig("protonet", ways=60, shots=5, queries=5).resolved()
    model = Conv4()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    sampler = EpisodeSampler(train_ds, 60, 5, 5, seed=0)
    stock_model = Conv4()
    stock_opt = torch.optim.Adam(stock_model.parameters(), 1e-3)
    stock_tasks = stock_taskset(stock_ds, 60, 5, 5)
    ours, stock = alternate(
        lambda i: protonet.ALGORITHM.train_step(model, optimizer, sampler, i, config),
        lambda i: stock_protonet_episode(stock_model, stock_opt, stock_tasks, 60, 5),
        iterations * 2,
    )
    print(f"{'ProtoNet 60w5s 5 queries':<40}{ours:>11.3f}{stock:>12.3f}{stock / ours:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--only", choices=["episodes", "training"])
    parser.add_argument(
        "--episodes", type=int, default=200, help="episodes timed per setting (ours)"
    )
    parser.add_argument(
        "--iterations", type=int, default=5, help="MAML meta-iterations timed per side"
    )
    args = parser.parse_args()
    random.seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "episodes"):
        bench_episodes(args.data_root, args.episodes)
    if args.only in (None, "training"):
        bench_training(args.data_root, args.iterations)


if __name__ == "__main__":
    main()
