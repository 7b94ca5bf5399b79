"""N-way K-shot episodes, sampled by learn2learn from one part of a split.

Each split part becomes its own ``l2l.data.MetaDataset`` over the cached tensors, so the task
transforms only ever see that part's classes (learn2learn's ``get_tasksets('omniglot')`` builds
them over the whole dataset, which lets training tasks draw test characters). Episodes come
from ``l2l.data.Taskset`` (the ``TaskDataset`` class under its current name) with learn2learn's
``FusedNWaysKShots``, ``LoadData``, ``RemapLabels`` and ``ConsecutiveLabels``, plus our
``ClassRotation`` when rotation augmentation is on. The sampler takes each episode's draw from
them (images, turns, labels) and gathers its images in one copy: what ``LoadData`` loads one
sample at a time.

A class with fewer images than an episode draws (shots + queries) is left out of a part's
episodes, with a warning, when the part has enough other classes (``usable_part``).

Episode ``i`` of a sampler with seed ``s`` depends on ``(s, i)`` alone, so every model evaluated
with the same seed sees the same tasks, and a resumed training run sees the episodes it would
have seen.
"""

from __future__ import annotations

import gc
import random
import warnings
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fewshot_cli.data.splits import Split
from fewshot_cli.data.transforms import ClassRotation
from fewshot_cli.errors import FewshotError
from fewshot_cli.l2l import l2l


class PartDataset(torch.utils.data.Dataset):
    """The images of one split part as float tensors, labelled by class index within the part.

    Images are kept as ``uint8 [C, H, W]`` (Omniglot's ``[1, 28, 28]``), already turned for
    rotated classes: a quarter of float32's memory and copies (mini-ImageNet's training part is
    0.8 GB so, 3.3 GB as floats). ``stack_samples`` scales an episode's images to ``[0, 1]``.

    Args:
        data: Omniglot, or any dataset as ``FewShotData``.
        classes: ``(class index, quarter turns)`` of each class, as in ``Split.parts``.

    Example::

        ds = PartDataset(data, split.parts["test"])
        image, label = ds[0]
    """

    def __init__(self, data, classes: list[tuple[int, int]]):
        by_character: dict[int, list[int]] = defaultdict(list)
        for index, character in enumerate(data.labels.tolist()):
            by_character[character].append(index)
        pixels = data.images if data.images.dim() == 4 else data.images.unsqueeze(1)
        chunks, targets = [], []
        for label, (character, turns) in enumerate(classes):
            images = pixels[by_character[character]]
            chunks.append(torch.rot90(images, turns, dims=(2, 3)) if turns % 4 else images)
            targets += [label] * len(images)
        self.images = (
            torch.cat(chunks) if chunks else torch.empty(0, *pixels.shape[1:], dtype=torch.uint8)
        )
        self.targets = targets
        self.classes = classes

    def keeping(self, labels: set[int]) -> PartDataset:
        """This part with the images of ``labels`` only (labelled as here, in the same order)."""
        kept = [i for i, target in enumerate(self.targets) if target in labels]
        part = PartDataset.__new__(PartDataset)
        part.images = self.images[kept]
        part.targets = [self.targets[i] for i in kept]
        part.classes = self.classes
        return part

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], self.targets[index]


def stack_samples(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(uint8 image, label)`` pairs into a float image batch in ``[0, 1]`` and a
    label vector (``default_collate`` without its per-sample type dispatch, then one scaling).
    """
    images, labels = zip(*samples)
    return torch.stack(images).float().div_(255), torch.tensor(labels)


def meta_dataset(data, split: Split, part: str) -> l2l.data.MetaDataset:
    """A learn2learn ``MetaDataset`` over one part of ``split`` (and only that part).

    Example::

        train = meta_dataset(data, make_split(data, "lake"), "train")
        len(train.labels)
        # 800
    """
    if part not in split.parts:
        raise FewshotError(f"split '{split.name}' has no part '{part}'")
    return meta_dataset_of(PartDataset(data, split.parts[part]))


def meta_dataset_of(dataset: PartDataset) -> l2l.data.MetaDataset:
    """A learn2learn ``MetaDataset`` over a part's images."""
    labels_to_indices: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(dataset.targets):
        labels_to_indices[label].append(index)
    # Handing the index over spares learn2learn a pass that loads every sample.
    return l2l.data.MetaDataset(dataset, labels_to_indices=dict(labels_to_indices))


@dataclass
class Episode:
    """One few-shot task: a labelled support set and a query set to classify.

    Support and query hold ``ways * shots`` and ``ways * queries`` images; labels are
    ``0 .. ways-1``, grouped by class. ``ways`` travels with the episode, so whoever classifies
    it needs no other source for the number of classes.
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    ways: int

    def to(self, device: torch.device | str) -> Episode:
        return Episode(
            *(
                t.to(device)
                for t in (self.support, self.support_labels, self.query, self.query_labels)
            ),
            ways=self.ways,
        )


def check_episode_shape(
    dataset: l2l.data.MetaDataset, ways: int, shots: int, queries: int, part: str = ""
) -> None:
    """Raise a one-line error for an episode the part cannot provide."""
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if value < 1:
            raise FewshotError(f"{name} must be at least 1 (got {value})")
    where = f"split part '{part}'" if part else "the dataset"
    if ways > len(dataset.labels):
        raise FewshotError(f"ways ({ways}) exceeds the {len(dataset.labels)} classes of {where}")
    per_class = min(len(v) for v in dataset.labels_to_indices.values())
    if shots + queries > per_class:
        raise FewshotError(
            f"shots + queries ({shots} + {queries}) exceeds the {per_class} images per class of {where}"
        )


def usable_part(
    dataset: l2l.data.MetaDataset, ways: int, shots: int, queries: int, part: str = ""
) -> tuple[l2l.data.MetaDataset, str | None]:
    """The part without its classes of fewer than ``shots + queries`` images, when some classes
    have that many: ``(dataset, warning)``, the warning naming how many were left out (None,
    and ``dataset`` itself, when none was or when no class has enough: ``check_episode_shape``
    then says why no episode can be drawn).

    Raises:
        FewshotError: fewer than ``ways`` classes have enough images.

    Example::

        part, warning = usable_part(meta_dataset(data, split, "test"), 5, 1, 15, "test")
        # warning: "2 of the 20 classes of split part 'test' have fewer than 16 images ..."
    """
    needed = shots + queries
    counts = {label: len(indices) for label, indices in dataset.labels_to_indices.items()}
    usable = {label: dataset.labels_to_indices[label] for label, n in counts.items() if n >= needed}
    if not usable or len(usable) == len(counts) or min(ways, shots, queries) < 1:
        return dataset, None
    where = f"split part '{part}'" if part else "the dataset"
    if len(usable) < ways:
        raise FewshotError(
            f"{where} has {len(usable)} classes with at least {needed} images (shots + "
            f"queries), fewer than the {ways} ways of an episode ({len(counts) - len(usable)} "
            "classes have fewer)"
        )
    warning = (
        f"{len(counts) - len(usable)} of the {len(counts)} classes of {where} have fewer than "
        f"{needed} images (shots + queries) and are left out of its episodes"
    )
    # learn2learn's transforms look at every image of the dataset: keep only the usable ones.
    return meta_dataset_of(dataset.dataset.keeping(set(usable))), warning


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def episode_seed(seed: int, index: int) -> str:
    """The seed of Python's ``random`` for episode ``index`` of the stream ``seed``.

    A text naming both numbers: ``random.seed`` uses every bit of a text (its bytes and their
    SHA-512), so no two ``(seed, index)`` pairs share a generator. An arithmetic mix such as
    ``seed * 1_000_003 + index`` would make neighbouring seeds share most of their episodes
    once a run draws that many (and ``random.seed`` of an int drops its sign).

    Args:
        seed: the sampler's seed (any int, negative included).
        index: the episode's index in the stream.

    Example:
        >>> episode_seed(1, 0) != episode_seed(0, 1_000_003)
        True
    """
    return f"fewshot-episode:{int(seed)}:{int(index)}"


class EpisodeSampler:
    """Seeded N-way K-shot episodes from one ``MetaDataset``.

    Args:
        dataset: the part to sample from (see ``meta_dataset``).
        ways, shots, queries: classes per episode, support and query images per class.
        seed: episode ``i`` depends on ``(seed, i)`` only.
        rotate: turn each class by a random multiple of 90 degrees (augmentation).
        part: the part's name, for error messages.
        warn: called with a one-line warning when classes with fewer than ``shots + queries``
            images are left out (``usable_part``; default: ``warnings.warn``).

    Example::

        sampler = EpisodeSampler(test_ds, ways=5, shots=1, queries=15, seed=0)
        episode = sampler[0]
        episode.support.shape, episode.query.shape
        (torch.Size([5, 1, 28, 28]), torch.Size([75, 1, 28, 28]))
    """

    def __init__(
        self,
        dataset: l2l.data.MetaDataset,
        ways: int,
        shots: int,
        queries: int,
        seed: int = 0,
        rotate: bool = False,
        part: str = "",
        warn: Callable[[str], None] | None = None,
    ):
        dataset, warning = usable_part(dataset, ways, shots, queries, part)
        if warning:
            (warn or _default_warn)(warning)
        check_episode_shape(dataset, ways, shots, queries, part)
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        tasks = l2l.data.transforms
        transforms = [
            tasks.FusedNWaysKShots(dataset, n=ways, k=shots + queries),
            tasks.LoadData(dataset),
        ]
        if rotate:
            transforms.append(ClassRotation(dataset))
        transforms += [tasks.RemapLabels(dataset), tasks.ConsecutiveLabels(dataset)]
        self.taskset = l2l.data.Taskset(
            dataset, task_transforms=transforms, num_tasks=-1, task_collate=stack_samples
        )
        # ConsecutiveLabels groups each class's shots + queries together: support first.
        per_class = torch.arange(ways * (shots + queries)) % (shots + queries)
        self.support_index = (per_class < shots).nonzero().squeeze(1)
        self.query_index = (per_class >= shots).nonzero().squeeze(1)
        self.order = torch.cat([self.support_index, self.query_index]).tolist()

    @contextmanager
    def _drawing(self, index: int):
        """Python's ``random`` seeded for episode ``index``, the collector paused, meanwhile."""
        # learn2learn's transforms draw from Python's global `random`; seed it for this episode
        # and put the caller's state back afterwards.
        state = random.getstate()
        random.seed(episode_seed(self.seed, index))
        # learn2learn builds a few small objects per sample; the cyclic garbage collector,
        # triggered by them, would scan every live object and cost more than the sampling.
        # They hold no cycles, so reference counting frees them with the collector paused.
        collecting = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if collecting:
                gc.enable()
            random.setstate(state)

    def plan(self, index: int) -> list[tuple[int, int, int]]:
        """Episode ``index`` drawn but not loaded: ``(image, quarter turns, label)`` per sample.

        ``image`` indexes the part's dataset (``PartDataset.images``); the samples come in the
        order ``self[index]`` stacks them (``support_index`` and ``query_index`` pick from it).
        The same draw as ``self[index]``: the same learn2learn transforms under the same seed.

        Example::

            sampler.plan(0)[:2]  # 5-way 1-shot, 1 query, rotations on
            # [(418, 3, 0), (431, 3, 0)]
        """
        with self._drawing(index):
            description = self.taskset.sample_task_description()
        labels = self.taskset.dataset.indices_to_labels
        # Each sample's last transform is RemapLabels' (after LoadData and ClassRotation's):
        # given any (data, label) pair, it returns the episode's label for that class.
        return [
            (d.index, ClassRotation.turns_of(d), d.transforms[-1]((None, labels[d.index]))[1])
            for d in description
        ]

    def __getitem__(self, index: int) -> Episode:
        """Episode ``index``: what ``self.taskset[index]`` loads under the episode's seed (the
        same images, turns and labels), gathered from the part's pixels in one copy."""
        plan = self.plan(index)
        rows = [plan[j] for j in self.order]
        pixels = self.taskset.dataset.dataset.images  # PartDataset: uint8 [N, C, H, W]
        # index_select copies whole images; indexing with a tensor copies pixel by pixel.
        images = pixels.index_select(0, torch.tensor([image for image, _, _ in rows]))
        for turns in (1, 2, 3):
            turned = [i for i, (_, t, _) in enumerate(rows) if t % 4 == turns]
            if turned:
                at = torch.tensor(turned)
                images.index_copy_(0, at, images.index_select(0, at).rot90(turns, (-2, -1)))
        images = images.float().div_(255)  # as stack_samples scales them
        labels = torch.tensor([label for _, _, label in rows])
        support = len(self.support_index)
        return Episode(
            support=images[:support],
            support_labels=labels[:support],
            query=images[support:],
            query_labels=labels[support:],
            ways=self.ways,
        )
