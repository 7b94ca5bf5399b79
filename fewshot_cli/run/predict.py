"""Classify the user's own images with a trained run, from a handful of labelled examples.

Queries are classified by the run's algorithm exactly as ``fewshot eval`` classifies an
episode's queries (``run.bn_mode.prepared_copy`` and the algorithm's ``classifier``): ProtoNet by
the nearest prototype (mean support embedding); MAML adapts a copy of the model on the support
set (with as many outputs as there are classes) and classifies with the adapted clone. By default
(``--bn-mode auto``) a query's prediction depends on the support set and on that query only:
``support`` BatchNorm where the algorithm's own mode is ``batch``, ``running`` for ProtoNet.
Images are read as ``data.user_images`` prepares them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import classify_queries
from fewshot_cli.choices import BN_MODE_HELP, INVERT_MODES
from fewshot_cli.data.user_images import (
    SupportSet,
    labelled_query,
    load_query,
    load_support,
    true_class,
)
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.bn_mode import prepared_copy, resolve_bn_mode
from fewshot_cli.run.checkpoint import load_run
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.evaluation import checkpoint_notices, refuse_test_steps

if TYPE_CHECKING:  # pandas is imported where the table is made (it costs a second)
    import pandas as pd

CHUNK = 256  # queries embedded per forward pass, which bounds memory for large folders
PROBABILITY_PREFIX = "p_"


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def unbalanced_support(support: SupportSet) -> str | None:
    """The smallest and the largest class of an unbalanced support set, in words, or None.

    Example::

        unbalanced_support(load_support("examples"))
        # "'cat' has 1 image, 'dog' has 10"
    """
    counts = torch.bincount(support.labels, minlength=len(support.classes)).tolist()
    small, large = min(counts), max(counts)
    if small == large:
        return None

    def images(n: int) -> str:
        return f"{n} image{'s' if n != 1 else ''}"

    smallest, largest = support.classes[counts.index(small)], support.classes[counts.index(large)]
    return f"'{smallest}' has {images(small)}, '{largest}' has {images(large)}"


def classify(
    config: TrainConfig,
    model: torch.nn.Module,
    support: SupportSet,
    query: torch.Tensor,
    bn_mode: str = "auto",
    steps: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Class probabilities ``[len(query), len(support.classes)]`` (softmax of the logits).

    The same computation as ``fewshot eval --bn-mode <the same mode>`` on an episode with these
    support images and these queries.

    Args:
        config: the run's resolved configuration.
        model: the trained network; left untouched (a deep copy is used).
        support: the labelled examples.
        query: ``float [n, 1, 28, 28]``.
        bn_mode: ``support`` (each query in a batch of its own with the support images),
            ``running`` (each image on its own, with training's statistics), ``batch``
            (statistics of the support images together with each chunk of ``CHUNK`` queries) or
            ``auto`` (``running`` for ProtoNet, ``support`` for the algorithms whose own mode is
            ``batch``).
        steps: adaptation steps (MAML; default: the run's ``test_inner_steps``).
        device: where to compute.

    Example::

        config, model, _ = load_trained("runs/proto")
        probabilities = classify(config.resolved(), model, load_support("examples"), images)
    """
    algorithm = registry.get(config.algorithm)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model, predicting=True)
    ways = len(support.classes)
    model = prepared_copy(algorithm, model, ways, mode, device)
    fitted = algorithm.classifier(
        model, support.images.to(device), support.labels.to(device), ways, config, steps=steps
    )
    with torch.no_grad():
        logits = classify_queries(fitted, query.to(device), mode, chunk=CHUNK)
    return torch.softmax(logits, dim=1).cpu()


def input_shape(config, invert: str = "auto") -> tuple[int, int] | None:
    """``(channels, size)`` of a resolved run's input when its dataset is not Omniglot (whose
    images ``convert_image`` prepares, inverted as needed), else None.

    Raises:
        FewshotError: the run's preprocessing cannot be reproduced on single files.
    """
    if config.dataset == "omniglot":
        return None
    if config.channels not in (1, 3) or not config.image_size:
        raise FewshotError(
            f"the run records no image channels and size for {config.dataset}: its "
            "preprocessing cannot be reproduced"
        )
    if invert == "yes":
        raise FewshotError(
            f"--invert yes: the {config.dataset} images this run learned from were not "
            "inverted (inversion applies to Omniglot runs)"
        )
    return config.channels, config.image_size


def predict(
    run: str | Path,
    support_dir: str | Path,
    query_path: str | Path,
    invert: str = "auto",
    bn_mode: str = "auto",
    steps: int | None = None,
    strict: bool = False,
    device: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Classify the query images of ``query_path`` from the examples in ``support_dir``.

    Args:
        run: run directory or checkpoint of a trained model.
        support_dir: one sub-folder per class (its name is the label) with one or more images.
        query_path: an image file, or a folder searched recursively for images; a folder with
            sub-folders named after support classes is labelled (see ``labelled_query``).
        invert: ``auto`` (invert images with a light border), ``yes`` or ``no``.
        bn_mode: ``auto``, ``support``, ``running`` or ``batch`` (see ``classify``).
        steps: MAML adaptation steps (default: the run's test inner steps); not for ProtoNet.
        strict: stop at an unreadable image instead of skipping it with a warning.
        device: ``auto``, ``cpu``, ``cuda``...
        warn: called with a one-line message for each skipped image and for an unbalanced
            support set where it biases the algorithm (default: ``warnings.warn``).

    Returns:
        One row per query image: ``path``, the predicted ``label``, its ``true_class`` (labelled
        queries only), the ``bn_mode`` used, and ``p_<class>``, the probability of each class
        in the support folder's (sorted) order. ``frame.attrs["notes"]`` holds what ``eval``
        would note (checkpoint, a new head) and the BatchNorm mode, one line each.

    Raises:
        FewshotError: bad run, folders or options.

    Example::

        frame = predict("runs/proto", "examples", "photos")
        frame[["path", "label"]]
    """
    warn = warn or _default_warn
    if invert not in INVERT_MODES:
        raise FewshotError(
            f"unknown --invert mode '{invert}' (choose from {', '.join(INVERT_MODES)})"
        )
    config, model, checkpoint_path, state = load_run(run)
    config = config.resolved()
    algorithm = registry.get(config.algorithm)
    # A bad mode fails before images are read.
    mode = resolve_bn_mode(config.algorithm, bn_mode, model, predicting=True)
    refuse_test_steps(config, steps, "--steps", run)
    shape = input_shape(config, invert)
    support = load_support(support_dir, invert, strict, warn, shape)
    unbalanced = unbalanced_support(support)
    if unbalanced and algorithm.unbalanced_support:
        warn(
            f"unbalanced support set: {unbalanced}; {config.algorithm} favours the larger "
            f"classes ({algorithm.unbalanced_support}): give every class the same number"
        )
    labelled = labelled_query(query_path, support.classes)  # a bad folder fails before reading
    query, paths = load_query(query_path, invert, strict, warn, shape)
    probabilities = classify(config, model, support, query, mode, steps, pick_device(device))
    import pandas as pd

    frame = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "label": [support.classes[i] for i in probabilities.argmax(1).tolist()],
        }
    )
    if labelled:
        frame["true_class"] = [true_class(query_path, p) for p in paths]
    frame["bn_mode"] = mode
    for index, name in enumerate(support.classes):
        frame[PROBABILITY_PREFIX + name] = probabilities[:, index].numpy().astype(float)
    test_steps = steps if steps is not None else (config.test_inner_steps or 0)
    frame.attrs["notes"] = [
        *checkpoint_notices(
            checkpoint_path,
            state["iteration"],
            config.iterations,
            model,
            len(support.classes),
            test_steps,
            action="predicting with",
        ),
        f"BatchNorm {mode}: {BN_MODE_HELP[mode]}",
    ]
    return frame
