"""The dataset registry: names, network inputs, light import, loading through it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fewshot_cli.data import registry
from fewshot_cli.data.dataset import FewShotData
from fewshot_cli.data.source import Omniglot
from fewshot_cli.errors import FewshotError


def test_names_and_network_inputs():
    assert registry.NAMES == ("omniglot", "mini-imagenet", "cifar-fs", "folder")
    assert registry.DEFAULT == "omniglot"
    assert registry.get("omniglot").network_input == (1, 28)
    assert registry.get("cifar-fs").network_input == (3, 32)
    assert registry.get("folder").network_input == (None, 84)
    with pytest.raises(FewshotError, match="unknown dataset 'imagenet' \\(choose from omniglot, "):
        registry.get("imagenet")


def test_listing_the_names_imports_nothing_heavy():
    code = (
        "import sys; from fewshot_cli.data import registry; registry.NAMES; registry.get('folder');"
        "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'learn2learn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_through_the_registry(tiny_root, tiny_data, cache_dir, tmp_path):
    omniglot = registry.load("omniglot", tiny_root, cache_dir=cache_dir)
    assert isinstance(omniglot, Omniglot)  # Omniglot's own form, as before
    common = registry.load_data("omniglot", tiny_root, cache_dir=cache_dir)
    assert isinstance(common, FewShotData) and common.digest == tiny_data.digest
    assert set(common.parts) == {"lake", "random"}
    with pytest.raises(FewshotError, match="needs a path"):
        registry.load("folder")
    with pytest.raises(FewshotError, match="no mini-ImageNet in"):
        registry.load_data("mini-imagenet", tmp_path, cache_dir=tmp_path)
