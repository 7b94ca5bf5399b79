"""mini-ImageNet-shaped speed: episodes and training steps at 84x84x3, beside learn2learn and easyfsl.

Usage (from the project root)::

    FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.datasets [--threads N]
        [--classes C --images I] [--episodes E] [--steps S] [--omniglot-steps S]

The real mini-ImageNet is not needed: the benchmark writes fake pickles in the format of
learn2learn's ``mini-imagenet-cache-{train,validation,test}.pkl`` (``C`` classes of ``I`` images,
84x84x3, split 64/16/20 in proportion; coloured blocks and noise, each class its own pattern)
into a temporary folder and reads them both ways.

1. sampling: episodes per second, 5-way and 30-way 1-shot with 15 queries, of ours
   (``load_mini_imagenet``, ``meta_dataset``, ``EpisodeSampler``) and of learn2learn's stock
   path (``l2l.vision.datasets.MiniImagenet(root, mode='train')`` in ``MetaDataset`` and
   ``TaskDataset`` with ``NWays``, ``KShots``, ``LoadData``, ``RemapLabels``,
   ``ConsecutiveLabels``). Sampling is data loading: every side runs it on one thread, as a
   DataLoader worker would. The fake classes hold fewer images than the real 600, which makes
   the stock ``KShots`` (it goes through every image of the chosen classes) cheaper than on the
   real files.
2. steps: ms per training step, its sampling included, at the papers' mini-ImageNet settings:
   MAML 5w1s (32 filters, 5 inner steps of 0.01, meta-batch 4, 15 queries), first and second
   order, with the ``l2l`` and ``vmap`` engines; ProtoNet 30w1s, 15 queries, 64 filters
   (ProtoNet has no engine choice: ours beside the step of learn2learn's examples over the stock
   tasks). These steps take seconds each: they are timed without a warm-up call.
3. easyfsl: easyfsl's ``TaskSampler`` and ``PrototypicalNetworks`` (its episodic training loop)
   over the same images and the same Conv-4, per training episode and for sampling alone, on the
   real Omniglot (60-way 1-shot 5 queries; ``--data-root``, default ``$FEWSHOT_DATA``) and on the
   fake 84x84x3 data (30-way 1-shot 15 queries), with a rough accuracy check on Omniglot.
   Skipped, with the reason, where easyfsl cannot be imported (``pip install easyfsl==1.5.0
   --no-deps``: a benchmark-only package).
4. memory: the size of the image cache, real mini-ImageNet's computed from its shape.

Every comparison runs its sides in turns in one process (the order flipped every turn), so the
ratios compare like with like on a shared machine; absolute times drift from run to run.
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_cli.algorithms import maml, protonet  # first: it silences gym's import-time notice
from fewshot_cli.algorithms.base import without_running_stats
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.mini_imagenet import FILES, load_mini_imagenet
from fewshot_cli.errors import FewshotError
from fewshot_cli.l2l import l2l
from fewshot_cli.run.config import TrainConfig

SIZE = 84
# The real mini-ImageNet: 100 classes of 600 images, 64/16/20 classes in train/val/test.
REAL_CLASSES, REAL_PER_CLASS, REAL_PARTS = 100, 600, {"train": 64, "val": 16, "test": 20}
SAMPLING = ((5, 1, 15), (30, 1, 15))  # MAML's 5w1s and ProtoNet's 30w1s training episodes
EASYFSL = "easyfsl==1.5.0"


# --- fake data -------------------------------------------------------------------------------


def part_sizes(classes: int) -> dict[str, int]:
    """Classes per part, in mini-ImageNet's 64/16/20 proportion.

    Example:
        >>> part_sizes(100), part_sizes(50)
        ({'train': 64, 'val': 16, 'test': 20}, {'train': 32, 'val': 8, 'test': 10})
    """
    train, val = round(classes * 0.64), round(classes * 0.16)
    return {"train": train, "val": val, "test": classes - train - val}


def fake_class(rng: np.random.Generator, images: int, size: int = SIZE) -> np.ndarray:
    """``images`` pictures of one class, ``uint8 [images, size, size, 3]``: a window on the
    class's own grid of coloured blocks (6 blocks across), shifted and noised per picture."""
    block = -(-size // 6)
    pattern = rng.integers(0, 256, (7, 7, 3)).repeat(block, 0).repeat(block, 1)
    out = np.empty((images, size, size, 3), np.uint8)
    for i in range(images):
        dy, dx = rng.integers(0, block + 1, 2)
        shifted = pattern[dy : dy + size, dx : dx + size].astype(np.int16)
        noise = rng.integers(-40, 41, (size, size, 3), dtype=np.int16)
        out[i] = np.clip(shifted + noise, 0, 255)
    return out


def write_fake_pickles(folder: Path, classes: int = 100, images: int = 60, seed: int = 0) -> Path:
    """learn2learn's three mini-ImageNet files with fake images; returns ``folder``.

    Each file is a pickled dict: ``image_data`` (``uint8 [n, 84, 84, 3]``) and ``class_dict``
    (class name -> its image indices), as the real files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = 0
    for part, count in part_sizes(classes).items():
        names = [f"n{first + c:08d}" for c in range(count)]
        data = np.concatenate([fake_class(rng, images) for _ in names])
        class_dict = {
            name: list(range(c * images, (c + 1) * images)) for c, name in enumerate(names)
        }
        with open(folder / FILES[part], "wb") as handle:
            pickle.dump({"image_data": data, "class_dict": class_dict}, handle, protocol=4)
        first += count
    return folder


# --- timing ----------------------------------------------------------------------------------


def in_turns(
    sides: dict[str, Callable[[int], object]], iterations: int, warmup: bool = True
) -> dict[str, float]:
    """Median seconds per call of each side (call ``i`` is ``side(i)``), after one warm-up call
    each when ``warmup``; the sides take turns, in reversed order every other turn, so the
    machine's other load falls on all of them alike."""
    names = list(sides)
    if warmup:
        for name in names:
            sides[name](0)
    seconds = {name: [] for name in names}
    for i in range(1, iterations + 1):
        for name in names if i % 2 else names[::-1]:
            start = time.perf_counter()
            sides[name](i)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


class one_thread:
    """torch on one thread meanwhile (sampling is a data loader's work: one thread each)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


# --- 1. episode sampling ---------------------------------------------------------------------


def load_ours(root: Path, cache_dir: Path):
    """``(data, training part, seconds)`` of our path (pickles decoded, cache written)."""
    start = time.perf_counter()
    data = load_mini_imagenet(root, cache_dir=cache_dir)
    train = meta_dataset(data, data.as_split("ravi"), "train")
    return data, train, time.perf_counter() - start


def load_stock(root: Path):
    """``(training part, seconds)`` of learn2learn's stock path: ``MiniImagenet`` in a
    ``MetaDataset`` (which loads every sample once for its bookkeeping).

    ``MiniImagenet`` reads its file with plain ``pickle``: acceptable here only because this
    benchmark wrote the file itself.
    """
    start = time.perf_counter()
    dataset = l2l.data.MetaDataset(l2l.vision.datasets.MiniImagenet(str(root), mode="train"))
    return dataset, time.perf_counter() - start


def stock_tasks(dataset, ways: int, shots: int, queries: int):
    """learn2learn's standard mini-ImageNet task transforms over ``dataset``."""
    from learn2learn.data.transforms import ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels

    return l2l.data.Taskset(  # TaskDataset, under its current name
        dataset,
        task_transforms=[
            NWays(dataset, n=ways),
            KShots(dataset, k=shots + queries),
            LoadData(dataset),
            RemapLabels(dataset),
            ConsecutiveLabels(dataset),
        ],
        num_tasks=-1,
    )


def sampling_sides(train, ways, shots, queries, stock_train=None, easyfsl=None) -> dict:
    """Functions drawing one episode: ours over ``train``, learn2learn's stock tasks over
    ``stock_train`` and easyfsl's loader over ``train``'s images (when given)."""
    sampler = EpisodeSampler(train, ways, shots, queries, seed=0)
    sides = {"ours": sampler.__getitem__}
    if stock_train is not None:
        tasks = stock_tasks(stock_train, ways, shots, queries)
        sides["stock"] = lambda i: tasks.sample()
    if easyfsl is not None:
        batches = easyfsl_loader(easyfsl, train, ways, shots, queries)
        sides["easyfsl"] = lambda i: next(batches)
    return sides


def bench_sampling(
    train, stock_train, episodes: int, easyfsl=None, settings=SAMPLING
) -> list[tuple[str, dict]]:
    """``(label, median seconds per episode of each side)`` per episode shape, on one thread."""
    rows = []
    with one_thread():
        for ways, shots, queries in settings:
            sides = sampling_sides(train, ways, shots, queries, stock_train, easyfsl)
            rows.append((f"{ways}w{shots}s {queries}q", in_turns(sides, episodes)))
    return rows


# --- 2. training steps -----------------------------------------------------------------------


def maml_config(engine: str, first_order: bool, **changes) -> TrainConfig:
    """MAML 5w1s at the paper's mini-ImageNet settings (``changes`` for smaller tests)."""
    return TrainConfig(
        "maml",
        ways=5,
        shots=1,
        dataset="mini-imagenet",
        engine=engine,
        first_order=first_order,
        **changes,
    ).resolved()


def bench_maml(train, iterations: int, warmup: bool = False, **changes) -> list[tuple]:
    """``(order, l2l s, vmap s)`` per meta-iteration (its sampling included), first and second
    order: the two engines from the same weights, on the same episodes, in turns."""
    rows = []
    for first_order in (True, False):
        configs = {e: maml_config(e, first_order, **changes) for e in ("l2l", "vmap")}
        torch.manual_seed(0)
        base = without_running_stats(maml.ALGORITHM.build_model(configs["l2l"]))
        sides = {}
        for engine, config in configs.items():
            model = copy.deepcopy(base)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            sampler = EpisodeSampler(train, config.ways, config.shots, config.queries, seed=0)
            sides[engine] = lambda i, m=model, o=optimizer, s=sampler, c=config: (
                maml.ALGORITHM.train_step(m, o, s, i, c)
            )
        seconds = in_turns(sides, iterations, warmup)
        rows.append(("first" if first_order else "second", seconds["l2l"], seconds["vmap"]))
    return rows


def protonet_config(ways: int, queries: int, dataset: str, **changes) -> TrainConfig:
    """ProtoNet 1-shot training at the paper's settings for ``dataset`` (64 filters)."""
    return TrainConfig(
        "protonet", ways=ways, shots=1, queries=queries, dataset=dataset, **changes
    ).resolved()


def stock_protonet_step(model, optimizer, tasks, ways: int, shots: int) -> None:
    """One ProtoNet episode as learn2learn's examples write it (support picked by position)."""
    data, labels = tasks.sample()
    model.train()
    support_mask = torch.arange(data.size(0)) % (data.size(0) // ways) < shots
    embeddings = model(data)
    prototypes = embeddings[support_mask].reshape(ways, shots, -1).mean(1)
    query = embeddings[~support_mask]
    logits = -((query.unsqueeze(1) - prototypes.unsqueeze(0)) ** 2).sum(-1)
    loss = F.cross_entropy(logits, labels[~support_mask])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def bench_protonet(
    train, config: TrainConfig, iterations: int, stock_train=None, easyfsl=None, warmup=True
) -> tuple[dict[str, float], dict]:
    """Median seconds per training episode (sampling included) of ours, learn2learn's stock
    path (given its dataset) and easyfsl (given it), in turns, each training its own copy of
    one freshly initialised Conv-4; and the trained models of ours and easyfsl."""
    torch.manual_seed(0)
    base = protonet.ALGORITHM.build_model(config)
    ways, shots, queries = config.ways, config.shots, config.queries
    models = {"ours": copy.deepcopy(base)}
    optimizer = torch.optim.Adam(models["ours"].parameters(), lr=config.lr)
    sampler = EpisodeSampler(train, ways, shots, queries, seed=0)
    sides = {
        "ours": lambda i: protonet.ALGORITHM.train_step(
            models["ours"], optimizer, sampler, i, config
        )
    }
    if stock_train is not None:
        stock_model = copy.deepcopy(base)
        stock_opt = torch.optim.Adam(stock_model.parameters(), lr=config.lr)
        tasks = stock_tasks(stock_train, ways, shots, queries)
        sides["stock"] = lambda i: stock_protonet_step(stock_model, stock_opt, tasks, ways, shots)
    if easyfsl is not None:
        models["easyfsl"] = easyfsl[1](copy.deepcopy(base))
        fsl_opt = torch.optim.Adam(models["easyfsl"].parameters(), lr=config.lr)
        batches = easyfsl_loader(easyfsl, train, ways, shots, queries)
        sides["easyfsl"] = lambda i: easyfsl_step(models["easyfsl"], fsl_opt, batches)
    return in_turns(sides, iterations, warmup), models


# --- 3. easyfsl ------------------------------------------------------------------------------


def import_easyfsl():
    """``(TaskSampler, PrototypicalNetworks)`` of easyfsl, or why it cannot be used (a str)."""
    try:
        from easyfsl.methods import PrototypicalNetworks
        from easyfsl.samplers import TaskSampler
    except Exception as exc:  # absent, or broken by what it imports
        return f"easyfsl cannot be imported ({type(exc).__name__}: {exc})"
    return TaskSampler, PrototypicalNetworks


def task_sampler_class(TaskSampler):
    """easyfsl's ``TaskSampler``, made constructible under recent torch.

    easyfsl 1.5.0 calls ``Sampler.__init__(data_source=None)``, which recent torch rejects. The
    returned subclass puts a ``Sampler`` that takes (and drops) that argument between the two in
    the method order; easyfsl itself is left as it is.
    """

    class TakesDataSource(torch.utils.data.Sampler):
        def __init__(self, data_source=None):
            super().__init__()

    class Shimmed(TaskSampler, TakesDataSource):
        pass

    return Shimmed


class TensorSet(torch.utils.data.Dataset):
    """Images and labels as easyfsl's ``FewShotDataset`` serves them (with ``get_labels``)."""

    def __init__(self, images: torch.Tensor, labels: list[int]):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def get_labels(self) -> list[int]:
        return self.labels


def easyfsl_loader(easyfsl, part, ways: int, shots: int, queries: int):
    """An endless iterator of easyfsl episodes over our part's images: easyfsl's episodic
    ``DataLoader`` (its ``TaskSampler`` as batch sampler, its collate function)."""
    # easyfsl's datasets serve float images: ours keeps uint8 and scales per episode.
    dataset = TensorSet(part.dataset.images.float().div(255), part.dataset.targets)
    sampler = task_sampler_class(easyfsl[0])(dataset, ways, shots, queries, 10**9)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=0, collate_fn=sampler.episodic_collate_fn
    )
    return iter(loader)


def easyfsl_step(model, optimizer, batches) -> None:
    """One episode of easyfsl's episodic training loop (its README's ``training_epoch``)."""
    support, support_labels, query, query_labels, _ = next(batches)
    model.train()
    optimizer.zero_grad()
    model.process_support_set(support, support_labels)
    loss = F.cross_entropy(model(query), query_labels)
    loss.backward()
    optimizer.step()


def accuracy_on_test(models: dict, test, episodes: int, ways: int = 5, queries: int = 15) -> dict:
    """Mean accuracy of each model on the same ``ways``-way 1-shot test episodes: ours by our
    classifier, easyfsl's by its own, both with BatchNorm's running statistics (eval mode)."""
    sampler = EpisodeSampler(test, ways, 1, queries, seed=1)
    correct = dict.fromkeys(models, 0.0)
    with torch.no_grad():
        for i in range(episodes):
            episode = sampler[i]
            for name, model in models.items():
                model.eval()
                if name == "easyfsl":
                    model.process_support_set(episode.support, episode.support_labels)
                    logits = model(episode.query)
                else:
                    logits = protonet.classifier(
                        model, episode.support, episode.support_labels, ways
                    )(episode.query)
                correct[name] += (logits.argmax(1) == episode.query_labels).float().mean().item()
    return {name: c / episodes for name, c in correct.items()}


def omniglot_parts(data_root: str):
    """``(split name, train part, test part)`` of Omniglot: the ``vinyals`` split (ProtoNet's
    paper's), else ``lake`` where its files are missing."""
    from fewshot_cli.data.source import load_omniglot
    from fewshot_cli.data.splits import make_split

    data = load_omniglot(data_root)
    try:
        split = make_split(data, "vinyals")
    except FewshotError:
        split = make_split(data, "lake")
    return split.name, meta_dataset(data, split, "train"), meta_dataset(data, split, "test")


def bench_omniglot(data_root, easyfsl, steps: int, episodes: int, test_episodes: int = 100):
    """Ours beside easyfsl on Omniglot, 60-way 1-shot 5 queries: ``(rows, accuracy)``, rows
    ``(label, ours s, easyfsl s)`` per training episode and per sampled episode; accuracy of
    the two models so trained (``steps`` + 1 episodes each) on ``test_episodes`` 5w1s tasks."""
    split, train, test = omniglot_parts(data_root)
    config = protonet_config(60, 5, "omniglot")
    trained, models = bench_protonet(train, config, steps, easyfsl=easyfsl)
    with one_thread():
        sampled = in_turns(sampling_sides(train, 60, 1, 5, easyfsl=easyfsl), episodes)
    rows = [
        (f"Omniglot {split} 60w1s 5q step", trained["ours"], trained["easyfsl"]),
        (f"Omniglot {split} 60w1s 5q sampling", sampled["ours"], sampled["easyfsl"]),
    ]
    return rows, accuracy_on_test(models, test, test_episodes)


# --- 4. memory -------------------------------------------------------------------------------


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def memory_lines(data, ours_train, stock_train) -> list[str]:
    """The cache's size for the real mini-ImageNet (from its shape) and for the fake data."""
    per_image = 3 * SIZE * SIZE
    real = REAL_CLASSES * REAL_PER_CLASS * per_image
    real_train = REAL_PARTS["train"] * REAL_PER_CLASS * per_image * 4
    return [
        f"real mini-ImageNet cache: {REAL_CLASSES * REAL_PER_CLASS} x 3x{SIZE}x{SIZE} uint8 = "
        f"{real:,} bytes = {gigabytes(real)} ({real / 2**30:.2f} GiB)",
        f"  its training part as float32 ({REAL_PARTS['train'] * REAL_PER_CLASS} images; "
        f"learn2learn's MiniImagenet's; meta_dataset keeps uint8, a quarter): "
        f"{gigabytes(real_train)}",
        f"fake data here: {len(data.images)} images, cache {gigabytes(data.images.nbytes)}; "
        f"training part: ours (uint8) {gigabytes(ours_train.dataset.images.nbytes)}, "
        f"stock (float32) {gigabytes(stock_train.dataset.x.nbytes)}",
    ]


# --- report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    """Milliseconds, with decimals where they are few."""
    return f"{seconds * 1000:.0f}" if seconds >= 0.01 else f"{seconds * 1000:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--classes", type=int, default=100, help="fake classes (64/16/20 split)")
    parser.add_argument("--images", type=int, default=60, help="fake images per class")
    parser.add_argument("--episodes", type=int, default=30, help="sampled episodes timed per side")
    parser.add_argument(
        "--steps", type=int, default=2, help="84x84 training steps timed per side (no warm-up)"
    )
    parser.add_argument(
        "--omniglot-steps", type=int, default=5, help="Omniglot ProtoNet episodes per side"
    )
    parser.add_argument("--data-root", default=os.environ.get("FEWSHOT_DATA"), help="Omniglot")
    args = parser.parse_args(argv)
    if args.images < 16 or part_sizes(args.classes)["train"] < 30:
        parser.error("needs 16 images per class and 30 training classes (--classes 47 or more)")
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)  # easyfsl's and learn2learn's stock samplers draw from it
    began, cpu = time.perf_counter(), time.process_time()
    argv = sys.argv[1:] if argv is None else argv
    print(f"command: python -m benchmarks.datasets {' '.join(argv)}".rstrip())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (sampling: 1 thread)")
    easyfsl = import_easyfsl()
    skipped, easyfsl = (easyfsl, None) if isinstance(easyfsl, str) else (None, easyfsl)
    summary = []

    with tempfile.TemporaryDirectory(prefix="fake-mini-imagenet-") as tmp:
        start = time.perf_counter()
        root = write_fake_pickles(Path(tmp) / "mini", args.classes, args.images)
        print(
            f"fake mini-ImageNet: {args.classes} classes x {args.images} images, "
            f"{SIZE}x{SIZE}x3, parts {part_sizes(args.classes)}; written in "
            f"{time.perf_counter() - start:.1f} s"
        )
        data, train, ours_setup = load_ours(root, Path(tmp) / "cache")
        stock_train, stock_setup = load_stock(root)
        print(
            f"set-up: ours {ours_setup:.1f} s (pickles decoded, cache written), "
            f"stock {stock_setup:.1f} s (unpickled, bookkeeping pass)"
        )

        print(f"\n1. episode sampling, training part, 1 thread, median of {args.episodes}")
        print(f"{'episode':<12}{'ours ep/s':>11}{'stock ep/s':>12}{'ours/stock':>12}")
        sampling = bench_sampling(train, stock_train, args.episodes, easyfsl)
        for label, seconds in sampling:
            ratio = seconds["stock"] / seconds["ours"]
            print(
                f"{label:<12}{1 / seconds['ours']:>11.1f}{1 / seconds['stock']:>12.1f}"
                f"{ratio:>11.2f}x",
                flush=True,
            )
            summary.append((f"sampling {label}: ours over stock", ratio))

        print(f"\n2. training steps, ms per step (sampling included), median of {args.steps}")
        print("MAML 5w1s, 32 filters, 5 inner steps of 0.01, meta-batch 4, 15 queries")
        print(f"{'order':<12}{'l2l ms':>11}{'vmap ms':>12}{'l2l/vmap':>12}")
        for order, l2l_s, vmap_s in bench_maml(train, args.steps):
            print(f"{order:<12}{ms(l2l_s):>11}{ms(vmap_s):>12}{l2l_s / vmap_s:>11.2f}x", flush=True)
            summary.append((f"MAML 5w1s {order} order: vmap over l2l", l2l_s / vmap_s))
        config = protonet_config(30, 15, "mini-imagenet")
        proto, _ = bench_protonet(train, config, args.steps, stock_train, easyfsl, warmup=False)
        print(
            "ProtoNet 30w1s 15 queries, Conv4('conv4', 3, 64, 84) (no engine choice); stock: "
            "learn2learn's tasks and its examples' step"
        )
        print(f"{'':<12}{'ours ms':>11}{'stock ms':>12}{'stock/ours':>12}")
        ratio = proto["stock"] / proto["ours"]
        print(f"{'episode':<12}{ms(proto['ours']):>11}{ms(proto['stock']):>12}{ratio:>11.2f}x")
        summary.append(("ProtoNet 30w1s step: ours over stock", ratio))

        print("\n3. easyfsl 1.5.0 (TaskSampler + PrototypicalNetworks), same images, same Conv-4")
        if skipped:
            print(f"skipped: {skipped}; `pip install {EASYFSL} --no-deps` to include it")
        else:
            rows = [
                (f"mini-ImageNet {label} sampling", s["ours"], s["easyfsl"])
                for label, s in sampling
            ]
            rows.append(("mini-ImageNet 30w1s 15q step", proto["ours"], proto["easyfsl"]))
            accuracy = None
            if args.data_root:
                omniglot, accuracy = bench_omniglot(
                    args.data_root, easyfsl, args.omniglot_steps, args.episodes
                )
                rows = omniglot + rows
            else:
                print("Omniglot rows skipped: no --data-root (nor $FEWSHOT_DATA)")
            print(f"{'':<36}{'ours ms':>10}{'easyfsl ms':>12}{'easyfsl/ours':>14}")
            for label, ours, fsl in rows:
                print(f"{label:<36}{ms(ours):>10}{ms(fsl):>12}{fsl / ours:>13.2f}x")
                summary.append((f"{label}: ours over easyfsl", fsl / ours))
            if accuracy:
                print(
                    f"Omniglot accuracy after {args.omniglot_steps + 1} training episodes each, "
                    f"100 test tasks 5w1s 15q: ours {accuracy['ours']:.1%}, easyfsl "
                    f"{accuracy['easyfsl']:.1%} (easyfsl: Euclidean distance, support and "
                    "queries in separate passes; ours: squared distance, one pass)"
                )

        print("\n4. memory")
        for line in memory_lines(data, train, stock_train):
            print(line)

    print(
        f"\nsummary: speed-ups (time of the other / ours or vmap), {torch.get_num_threads()} "
        "threads, sampling on 1"
    )
    for label, ratio in summary:
        print(f"  {label:<52}{ratio:>7.2f}x")
    print(
        f"total {time.perf_counter() - began:.0f} s wall, "
        f"{time.process_time() - cpu:.0f} s CPU (this process)"
    )


if __name__ == "__main__":
    main()
