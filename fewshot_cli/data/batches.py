"""Batches of same-shaped episodes, and building them on the device from images kept there.

``TaskBatch`` stacks tasks along a leading dimension: what the vmap engine consumes.
``DeviceEpisodes`` builds one from a sampler's episodes without per-task tensors: the host
draws each episode's image indices, quarter turns and labels exactly as ``EpisodeSampler``
does (``EpisodeSampler.plan``: the same learn2learn transforms under the same seed), and the
device gathers, turns and scales the images of the whole batch in a few tensor operations from
the part's ``uint8`` pixels, kept there. Only those small integer plans cross to the device
per batch, never images. The result equals stacking ``sampler[i]`` bit for bit.

Example::

    episodes = DeviceEpisodes(EpisodeSampler(train_ds, 5, 1, 1, rotate=True), "cuda")
    batch = episodes.batch(0, 32)  # episodes 0..31
    batch.support.shape, batch.query.shape
    # (torch.Size([32, 5, 1, 28, 28]), torch.Size([32, 5, 1, 28, 28]))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:  # the episodes module imports learn2learn; the vmap engine needs only TaskBatch
    from fewshot_cli.data.episodes import Episode, EpisodeSampler

__all__ = ["TaskBatch", "DeviceEpisodes", "device_batches"]


@dataclass
class TaskBatch:
    """Tasks of one shape stacked along a leading task dimension ``T``.

    Attributes:
        support: ``[T, S, C, H, W]`` support images.
        support_labels: ``[T, S]`` labels in ``0 .. ways-1``.
        query: ``[T, Q, C, H, W]`` query images.
        query_labels: ``[T, Q]`` labels.
        ways: classes per task (None: read from the support labels where needed).
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    ways: int | None = None

    def __len__(self) -> int:
        return self.support.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        """The batch on ``device`` (images also cast to ``dtype`` when given)."""
        return TaskBatch(
            self.support.to(device, dtype),
            self.support_labels.to(device),
            self.query.to(device, dtype),
            self.query_labels.to(device),
            self.ways,
        )

    def __getitem__(self, index: slice) -> TaskBatch:
        return TaskBatch(
            self.support[index],
            self.support_labels[index],
            self.query[index],
            self.query_labels[index],
            self.ways,
        )

    def __iter__(self) -> Iterator[Episode]:
        """Each task as an ``Episode`` (views), for code that takes episodes one by one."""
        from fewshot_cli.data.episodes import Episode  # learn2learn: only where episodes are used

        ways = self.ways if self.ways is not None else int(self.support_labels.max()) + 1
        for i in range(len(self)):
            yield Episode(
                self.support[i], self.support_labels[i], self.query[i], self.query_labels[i], ways
            )


# Every uint8 pixel value as the float the host path makes of it (``stack_samples``: ``.float()
# .div_(255)`` on the CPU). A lookup keeps the device's images equal to the host's bit for bit:
# CUDA divides by a scalar as a multiplication by its reciprocal, which can differ in the last bit.
LEVELS = torch.arange(256, dtype=torch.float32).div_(255)


class DeviceEpisodes:
    """A sampler's episodes, built in batches on ``device`` from the part's images kept there.

    ``batch(first, count)`` equals ``stack_episodes([sampler[i] for i in range(first,
    first + count)])`` bit for bit, moved to ``device``; ``self[i]`` is ``sampler[i]`` (on the
    host), so this object stands in for the sampler wherever one is taken.

    Args:
        sampler: the seeded episodes (an ``EpisodeSampler``).
        device: where the images are kept and the batches built.

    Example::

        episodes = DeviceEpisodes(sampler, "cuda")
        batch = episodes.batch(96, 32)  # episodes 96..127: iteration 3's at meta-batch 32
    """

    def __init__(self, sampler: EpisodeSampler, device: torch.device | str):
        self.sampler = sampler
        self.ways, self.shots, self.queries = sampler.ways, sampler.shots, sampler.queries
        self.seed = sampler.seed
        self.device = torch.device(device)
        images = sampler.taskset.dataset.dataset.images  # PartDataset: uint8 [N, C, H, W]
        self.shape = tuple(images.shape[1:])
        channels, height, width = self.shape
        if height != width:
            raise FewshotError(f"quarter turns need square images (got {height}x{width})")
        self.pixels = images.flatten(1).to(self.device)  # 1 byte per pixel on the device
        self.levels = LEVELS.to(self.device)
        # Pixel k of an image turned t times is pixel turned[t, k] of the image (torch.rot90's
        # own permutation, over the last two dimensions as ClassRotation turns them).
        positions = torch.arange(channels * height * width).view(self.shape)
        self.turned = torch.stack(
            [torch.rot90(positions, t, dims=(-2, -1)).flatten() for t in range(4)]
        ).to(self.device)
        self.support_order = sampler.support_index.tolist()
        self.query_order = sampler.query_index.tolist()

    def __getitem__(self, index: int) -> Episode:
        return self.sampler[index]

    def batch(self, first: int, count: int) -> TaskBatch:
        """Episodes ``first .. first+count-1`` stacked on the device.

        Example::

            batch = episodes.batch(0, 32)
        """
        if count < 1:
            raise FewshotError(f"count must be at least 1 (got {count})")
        plans = [self.sampler.plan(first + t) for t in range(count)]
        # Every task's support samples, then every task's queries: one gather, two views.
        rows = [plan[j] for plan in plans for j in self.support_order]
        rows += [plan[j] for plan in plans for j in self.query_order]
        turning = any(turns % 4 for _, turns, _ in rows)
        # [3, samples]: image indices, turns and labels each contiguous, in one copy.
        plan = torch.tensor(rows, dtype=torch.long).t().contiguous()
        if self.device.type == "cuda":  # lets the copy run without waiting for the GPU's queue
            plan = plan.pin_memory()
        index, turns, labels = plan.to(self.device, non_blocking=True)
        pixels = self.pixels.index_select(0, index)  # whole rows: not a copy per pixel
        if turning:
            pixels = pixels.gather(1, self.turned[turns % 4])
        if self.device.type == "cpu":  # the host path's own scaling, without int64 indices
            images = pixels.float().div_(255).view(len(rows), *self.shape)
        else:
            images = self.levels[pixels.long()].view(len(rows), *self.shape)
        split = count * len(self.support_order)
        return TaskBatch(
            images[:split].view(count, -1, *self.shape),
            labels[:split].view(count, -1),
            images[split:].view(count, -1, *self.shape),
            labels[split:].view(count, -1),
            self.ways,
        )


def device_batches(sampler: EpisodeSampler, device: torch.device | str) -> DeviceEpisodes:
    """``sampler``'s episodes built on ``device`` in batches (see ``DeviceEpisodes``).

    Example::

        train_sampler = device_batches(EpisodeSampler(train_ds, 5, 1, 1), "cuda")
    """
    return DeviceEpisodes(sampler, device)
