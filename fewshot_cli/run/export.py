"""A trained network as a file that plain torch (``torch.export``) or an ONNX runtime loads.

What is exported is the network alone, in the BatchNorm mode its algorithm tests with: for
ProtoNet the embedding (images ``[n, 1, 28, 28]`` to features ``[n, 1600]`` or ``[n, 64]``);
prototypes and distances are a few lines of torch, shown in the README. For MAML, Meta-SGD and
ANIL the network with its meta-learned head (images to logits); adapting it to a support set
needs this package.

Example::

    export("pretrained:protonet-omniglot-5w1s", "protonet.pt2")
    net = torch.export.load("protonet.pt2").module()
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import pretrained
from fewshot_cli.run.checkpoint import load_trained

FORMATS = (".pt2", ".onnx")


def network_of(path: str | Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """The trained network of a run (or ``pretrained:NAME``) in its test BatchNorm mode, and an
    example input batch of the shape it takes."""
    config, model, _ = load_trained(pretrained.locate(path))
    algorithm = registry.get(config.algorithm)
    network = getattr(model, "module", model)  # Meta-SGD wraps the network with its rates
    network.train(algorithm.bn_mode == "batch")  # batch: each batch's own statistics
    return network, torch.zeros(2, 1, 28, 28)


def export(path: str | Path, out: str | Path) -> Path:
    """Write the network of ``path`` to ``out``: ``torch.export``'s program for ``.pt2``, ONNX
    for ``.onnx``; the batch size stays free.

    Raises:
        FewshotError: another file type, or ``.onnx`` without the ``onnx`` package.
    """
    out = Path(out)
    if out.suffix not in FORMATS:
        raise FewshotError(f"--out {out}: give a file ending in {' or '.join(FORMATS)}")
    if out.suffix == ".onnx" and importlib.util.find_spec("onnx") is None:
        raise FewshotError("ONNX export needs the onnx package (pip install onnx)")
    network, example = network_of(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = ({0: torch.export.Dim("n", min=2, max=100_000)},)
    if out.suffix == ".onnx":
        torch.onnx.export(network, (example,), str(out), dynamic_shapes=batch, dynamo=True)
    else:
        torch.export.save(torch.export.export(network, (example,), dynamic_shapes=batch), out)
    return out
