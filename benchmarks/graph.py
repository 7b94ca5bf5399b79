"""The captured MAML step beside the eager vmap step, at the MAML paper's settings.

Usage (from the project root)::

    python -m benchmarks.graph [--device cpu|cuda] [--iterations 20] [--cells 5w1s,20w5s]
                               [--precisions fp32,tf32] [--channels-last] [--meta-batch N]
                               [--threads N]

Seconds per meta-iteration of ``maml_vmap.meta_step`` (eager, with Adam as the training loop
makes it for that path) and of ``maml_graph.GraphedStep.step`` (captured at its first call,
replayed after; Adam with ``capturable=True``), for each cell's paper settings (strided Conv-4,
queries per class = shots, second order, Adam 1e-3; inner lr 0.4, 1 step, meta-batch 32 at 5
ways; 0.1, 5 steps, 16 at 20 ways), at each precision (``run.precision``). ``--channels-last``
adds the captured step with channels-last weights and inputs. Inputs are random Omniglot-shaped
tasks made on the device beforehand (a few, in turn): the captured step copies each into its
buffers, as in training. Every side starts from the same weights; they run in turns in one
process, so the ratios compare like with like; ``capture s`` is the one-off cost of the first
call (warm-up and capture). A CPU cannot capture: there the table times the eager step alone.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings

import torch

from benchmarks.engines import CELLS, random_batch, timed
from fewshot_cli.algorithms import maml_family, maml_vmap
from fewshot_cli.algorithms.maml_graph import GraphedStep
from fewshot_cli.run.precision import PRECISIONS, precision

# Distinct batches each side cycles through: the captured step copies a new one every time.
BATCHES = 4


def bench_cell(
    cell: str, iterations: int, device: str, meta_batch: int | None, channels_last: bool
) -> dict[str, float]:
    """Median seconds per iteration of each side (``eager``, ``graph``, ``graph-cl``) and the
    captured sides' first call (``capture``, ``capture-cl``), at ``cell``'s paper settings."""
    ways, shots, inner_lr, steps, paper_batch, _ = CELLS[cell]
    tasks = meta_batch or paper_batch
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(tasks, ways, shots, shots, device, generator) for _ in range(BATCHES)]
    torch.manual_seed(0)
    base = maml_vmap.without_running_stats(maml_family.network(ways, "conv4-strided")).to(device)
    sides, firsts = {}, {}
    model = copy.deepcopy(base)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sides["eager"] = lambda batch: maml_vmap.meta_step(model, optimizer, batch, steps, inner_lr)
    if device == "cuda":
        variants = [("graph", False)] + ([("graph-cl", True)] if channels_last else [])
        for name, layout in variants:
            network = copy.deepcopy(base)
            adam = torch.optim.Adam(network.parameters(), lr=1e-3, capturable=True)
            graphed = GraphedStep(network, adam, steps, inner_lr, channels_last=layout)
            try:
                firsts[name.replace("graph", "capture")] = timed(
                    lambda g=graphed: g.step(batches[0]), device
                )
            except RuntimeError as error:  # one failed capture must not cost the other rows
                print(f"{cell}: {name} failed: {str(error).splitlines()[0]}", flush=True)
                continue
            sides[name] = graphed.step
    sides["eager"](batches[0])  # the eager side's warm-up
    times = {name: [] for name in sides}
    for i in range(iterations):
        batch = batches[(i + 1) % BATCHES]
        for name, step in sides.items():
            times[name].append(timed(lambda s=step, b=batch: s(b), device))
    return {**{name: statistics.median(t) for name, t in times.items()}, **firsts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--iterations", type=int, default=20, help="timed calls per side and row")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, e.g. 5w1s,20w1s")
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32, tf32"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="also the captured step in channels-last"
    )
    parser.add_argument(
        "--meta-batch", type=int, help="tasks per iteration (default: each cell's paper's)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if [c for c in cells if c not in CELLS] or not cells:
        parser.error(f"--cells: choose from {', '.join(CELLS)}")
    if [p for p in precisions if p not in PRECISIONS] or not precisions:
        parser.error(f"--precisions: choose from {', '.join(PRECISIONS)}")
    if args.iterations < 1 or (args.meta_batch is not None and args.meta_batch < 1):
        parser.error("--iterations, --meta-batch: at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    where = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; median of {args.iterations} calls after the first")
    print("MAML meta-iteration, conv4-strided, second order, queries per class = shots")
    if not cuda:
        print("the captured step needs CUDA: timing the eager vmap step only")
    header = f"{'cell':<7}{'tasks':>6}{'precision':>10}{'eager s/it':>12}"
    if cuda:
        header += f"{'graph s/it':>12}{'eager/graph':>12}{'capture s':>11}"
        if args.channels_last:
            header += f"{'cl s/it':>10}{'eager/cl':>10}{'capture s':>11}"
    print(header)
    for cell in cells:
        for name in precisions:
            with precision(name), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*running without CUDA graph capture")
                seconds = bench_cell(
                    cell, args.iterations, args.device, args.meta_batch, args.channels_last
                )
            eager = seconds["eager"]
            tasks = args.meta_batch or CELLS[cell][4]
            row = f"{cell:<7}{tasks:>6}{name:>10}{eager:>12.4f}"
            if cuda:
                for side, widths in (("graph", (12, 11)), ("graph-cl", (10, 9))):
                    if side == "graph-cl" and not args.channels_last:
                        continue
                    if side not in seconds:
                        row += f"{'failed':>{widths[0]}}{'-':>{widths[1] + 1}}{'-':>11}"
                        continue
                    first = seconds[side.replace("graph", "capture")]
                    row += f"{seconds[side]:>{widths[0]}.4f}"
                    row += f"{eager / seconds[side]:>{widths[1]}.2f}x{first:>11.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
