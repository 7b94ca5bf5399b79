"""Task transforms of our own that plug into learn2learn's ``TaskDataset``.

learn2learn's ``RandomClassRotation`` rotates through torchvision on every image; ours turns the
cached tensors with ``torch.rot90`` (exact quarter turns, no interpolation, no PIL).
"""

from __future__ import annotations

import random

import torch

from fewshot_cli.l2l import l2l


class ClassRotation(l2l.data.transforms.TaskTransform):
    """Rotate all images of each class in a task by one random multiple of 90 degrees.

    Every class of an episode draws its own number of quarter turns, so a rotated character acts
    as a new class (the augmentation of Santoro et al. and Finn et al.). Put it after ``LoadData``
    (it acts on loaded ``(image, label)`` pairs); randomness comes from Python's ``random`` like the
    rest of learn2learn's transforms, so a seeded episode stays reproducible.

    Args:
        dataset: the ``MetaDataset`` the task is sampled from.
        turns: the allowed numbers of quarter turns.

    Example::

        transforms = [FusedNWaysKShots(ds, n=5, k=2), LoadData(ds), ClassRotation(ds),
                      RemapLabels(ds), ConsecutiveLabels(ds)]
        taskset = l2l.data.Taskset(ds, transforms)
    """

    def __init__(self, dataset, turns: tuple[int, ...] = (0, 1, 2, 3)):
        super().__init__(dataset)
        self.turns = turns

    def __call__(self, task_description):
        if task_description is None:
            task_description = self.new_task()
        turns_of_label: dict[int, int] = {}
        for description in task_description:
            label = self.dataset.indices_to_labels[description.index]
            if label not in turns_of_label:
                turns_of_label[label] = random.choice(self.turns)
            description.transforms.append(_Rotate(turns_of_label[label]))
        return task_description

    @staticmethod
    def turns_of(description) -> int:
        """The quarter turns this transform gave a sample's ``DataDescription`` (0: none).

        Lets a sampler that gathers images itself turn them as ``get_task`` would.
        """
        return sum(t.k for t in description.transforms if isinstance(t, _Rotate))


class _Rotate:
    """Turns the image of an ``(image, label)`` pair by ``k`` quarter turns."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, sample):
        image, label = sample
        return torch.rot90(image, self.k, dims=(-2, -1)), label
