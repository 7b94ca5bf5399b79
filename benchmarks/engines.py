"""MAML engines side by side: learn2learn's loop and the vmap engine, at the MAML paper's settings.

Usage (from the project root)::

    python -m benchmarks.engines [--device cpu|cuda] [--iterations 5] [--cells 5w1s,20w1s]
                                 [--only train|eval|protonet] [--eval-episodes 64] [--threads N]
                                 [--first-order] [--queries 1,5,15] [--meta-batch 4,8,16]
                                 [--inner-steps S] [--inner-lr LR]

``train``: seconds per meta-iteration of the seam's ``step_on_episodes`` with MAML's l2l classifier
(``l2l.algorithms.MAML``, one task after another: ``--engine l2l``) and of ``maml_vmap.meta_step`` (all tasks in one vmapped call), for each
grid cell's paper settings (``--first-order``, ``--queries``, ``--meta-batch``, ``--inner-steps``
and ``--inner-lr`` time other ones, as the cpu budget's cells use): strided Conv-4, queries per class = shots, second order, inner lr 0.4,
1 step, meta-batch 32 at 5 ways; 0.1, 5 steps, meta-batch 16 at 20 ways. ``eval``: seconds per
test episode (15 queries per class, 3 / 5 test steps) of evaluation's l2l loop (MAML's
``classifier``: clone, adapt, no-grad forward of support and queries) and of
``maml_vmap.adapt_and_predict``. ``protonet``: seconds per ProtoNet training episode (60 ways,
5 queries per class, max-pool Conv-4 with running statistics: its paper's) at 1 and 5 shots. Inputs are random tensors of Omniglot's
shape (no data needed); both networks start from the same weights and have BatchNorm without
running statistics (the paper's). The engines run in turns in one process, so the ratio compares
like with like on a shared machine; absolute seconds drift from run to run.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from types import SimpleNamespace

import torch

from fewshot_cli.algorithms import (  # first: it silences gym's import-time notice
    maml,
    maml_family,
    maml_vmap,
    protonet,
)
from fewshot_cli.algorithms.backbone import Conv4
from fewshot_cli.algorithms.base import step_on_episodes
from fewshot_cli.data.episodes import Episode

# Cell -> (ways, shots, inner lr, train steps, meta-batch, test steps), from the MAML paper.
CELLS = {
    "5w1s": (5, 1, 0.4, 1, 32, 3),
    "5w5s": (5, 5, 0.4, 1, 32, 3),
    "20w1s": (20, 1, 0.1, 5, 16, 5),
    "20w5s": (20, 5, 0.1, 5, 16, 5),
}
TEST_QUERIES = 15


def random_batch(
    tasks: int, ways: int, shots: int, queries: int, device: str, generator: torch.Generator
) -> maml_vmap.TaskBatch:
    """Random Omniglot-shaped tasks, labels grouped by class as the episode sampler makes them."""

    def labels(per_class):
        return torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).clone()

    return maml_vmap.TaskBatch(
        torch.rand(tasks, ways * shots, 1, 28, 28, generator=generator),
        labels(shots),
        torch.rand(tasks, ways * queries, 1, 28, 28, generator=generator),
        labels(queries),
    ).to(device)


def unstack(batch: maml_vmap.TaskBatch, ways: int) -> list[Episode]:
    """The batch as the list of single episodes the l2l loop takes."""
    return [
        Episode(
            batch.support[i], batch.support_labels[i], batch.query[i], batch.query_labels[i], ways
        )
        for i in range(len(batch))
    ]


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def side_by_side(l2l_fn, vmap_fn, iterations: int, device: str) -> tuple[float, float]:
    """Median seconds of each, after one warm-up call each, the two alternating."""
    l2l_fn(), vmap_fn()
    l2l_times, vmap_times = [], []
    for _ in range(iterations):
        l2l_times.append(timed(l2l_fn, device))
        vmap_times.append(timed(vmap_fn, device))
    return statistics.median(l2l_times), statistics.median(vmap_times)


def bench_train(
    cell: str,
    iterations: int,
    device: str,
    first_order: bool,
    queries: int,
    meta_batch: int,
    steps: int,
    inner_lr: float,
) -> tuple[float, float]:
    """Seconds per meta-iteration of each engine at ``cell``'s ways and shots with these
    settings (``main`` fills in the paper's where none is asked for)."""
    ways, shots = CELLS[cell][:2]
    torch.manual_seed(0)
    base = maml_vmap.without_running_stats(maml_family.network(ways, "conv4-strided")).to(device)
    l2l_model, vmap_model = copy.deepcopy(base), copy.deepcopy(base)
    config = SimpleNamespace(inner_steps=steps, inner_lr=inner_lr, first_order=first_order)
    l2l_opt = torch.optim.Adam(l2l_model.parameters(), lr=1e-3)
    vmap_opt = torch.optim.Adam(vmap_model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(meta_batch, ways, shots, queries, device, generator)
    episodes = unstack(batch, ways)
    return side_by_side(
        lambda: step_on_episodes(maml.ALGORITHM, l2l_model, l2l_opt, episodes, config),
        lambda: maml_vmap.meta_step(
            vmap_model, vmap_opt, batch, steps, inner_lr, first_order=first_order
        ),
        iterations,
        device,
    )


def bench_eval(cell: str, iterations: int, device: str, episodes: int) -> tuple[float, float]:
    """Seconds per test episode, ``episodes`` episodes per timed call."""
    ways, shots, inner_lr, _, _, test_steps = CELLS[cell]
    torch.manual_seed(0)
    model = maml_vmap.without_running_stats(maml_family.network(ways, "conv4-strided")).to(device)
    l2l_model = copy.deepcopy(model)
    config = SimpleNamespace(inner_lr=inner_lr, test_inner_steps=test_steps)
    batch = random_batch(
        episodes, ways, shots, TEST_QUERIES, device, torch.Generator().manual_seed(1)
    )
    singles = unstack(batch, ways)

    def l2l_loop():  # what evaluation.evaluate does per episode with the l2l engine
        for episode in singles:
            fitted = maml.classifier(
                l2l_model, episode.support, episode.support_labels, ways, config
            )
            with torch.no_grad():
                fitted(episode.query).argmax(1)

    l2l_s, vmap_s = side_by_side(
        l2l_loop,
        lambda: maml_vmap.adapt_and_predict(model, batch, test_steps, inner_lr),
        iterations,
        device,
    )
    return l2l_s / episodes, vmap_s / episodes


def bench_protonet(shots: int, iterations: int, device: str) -> float:
    """Median seconds of one ProtoNet training episode, 60 ways, 5 queries per class."""
    torch.manual_seed(0)
    model = Conv4("conv4").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    episode = unstack(random_batch(1, 60, shots, 5, device, torch.Generator().manual_seed(2)), 60)
    config = SimpleNamespace()
    step = lambda: step_on_episodes(protonet.ALGORITHM, model, optimizer, episode, config)  # noqa: E731
    step()
    return statistics.median(timed(step, device) for _ in range(iterations))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--iterations", type=int, default=5, help="timed calls per engine and cell")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, e.g. 5w1s,20w1s")
    parser.add_argument("--only", choices=("train", "eval", "protonet"), help="one of the tables")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: torch's own choice); "
        "1 gives steadier figures on a busy machine",
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=64, help="test episodes per timed call"
    )
    parser.add_argument(
        "--first-order", action="store_true", help="time first-order meta-training instead"
    )
    parser.add_argument(
        "--queries",
        help="training queries per class, comma-separated for a row each "
        "(default: the shots, as the paper)",
    )
    parser.add_argument(
        "--meta-batch",
        help="tasks per meta-iteration, comma-separated for a row each (default: paper's)",
    )
    parser.add_argument(
        "--inner-steps", type=int, help="inner steps in training (default: paper's)"
    )
    parser.add_argument("--inner-lr", type=float, help="inner learning rate (default: paper's)")
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {', '.join(CELLS)}")
    try:
        query_counts = [int(q) for q in (args.queries or "").split(",") if q.strip()]
        meta_batches = [int(b) for b in (args.meta_batch or "").split(",") if b.strip()]
    except ValueError:
        parser.error("--queries, --meta-batch: comma-separated whole numbers, e.g. 1,5,15")
    if any(n < 1 for n in query_counts + meta_batches):
        parser.error("--queries, --meta-batch: each must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    where = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(
        f"torch {torch.__version__}, {where}; median of {args.iterations} calls after one warm-up"
    )
    if args.only in (None, "train"):
        order = "first order" if args.first_order else "second order"
        print(f"\nmeta-training, conv4-strided, {order}")
        print(
            f"{'cell':<7}{'lr':>5}{'steps':>6}{'tasks':>6}{'queries':>8}"
            f"{'l2l s/it':>11}{'vmap s/it':>11}{'l2l/vmap':>10}"
        )
        for cell in cells:
            ways, shots, lr, steps, paper_batch, _ = CELLS[cell]
            lr, steps = args.inner_lr or lr, args.inner_steps or steps
            for meta_batch, queries in itertools.product(
                meta_batches or [paper_batch], query_counts or [shots]
            ):
                l2l_s, vmap_s = bench_train(
                    cell,
                    args.iterations,
                    args.device,
                    args.first_order,
                    queries,
                    meta_batch,
                    steps,
                    lr,
                )
                print(
                    f"{cell:<7}{lr:>5}{steps:>6}{meta_batch:>6}{queries:>8}"
                    f"{l2l_s:>11.3f}{vmap_s:>11.3f}{l2l_s / vmap_s:>9.2f}x",
                    flush=True,
                )
    if args.only in (None, "eval"):
        print(
            f"\nevaluation, {TEST_QUERIES} queries per class, {args.eval_episodes} episodes per call"
        )
        print(f"{'cell':<7}{'steps':>6}{'l2l s/ep':>11}{'vmap s/ep':>11}{'l2l/vmap':>10}")
        for cell in cells:
            l2l_s, vmap_s = bench_eval(cell, args.iterations, args.device, args.eval_episodes)
            print(
                f"{cell:<7}{CELLS[cell][5]:>6}{l2l_s:>11.4f}{vmap_s:>11.4f}{l2l_s / vmap_s:>9.2f}x",
                flush=True,
            )
    if args.only in (None, "protonet"):
        print("\nProtoNet training episode, 60 ways, 5 queries per class, conv4")
        for shots in (1, 5):
            print(
                f"60w{shots}s   {bench_protonet(shots, args.iterations, args.device):.4f} s/episode",
                flush=True,
            )


if __name__ == "__main__":
    main()
