"""Shared fixtures: a tiny generated Omniglot-shaped folder, and the real data when available.

The tiny set mimics the official layout (``images_background/<alphabet>/<characterNN>/
<id>_<drawer>.png``, 105x105, black strokes on white) with random glyphs: each character has its
own strokes, and each of its 20 drawings jitters them, so a model can learn to tell them apart.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

TINY_LAYOUT = {
    "images_background": {"Alpha": 4, "Beta": 4, "Gamma": 4, "Delta": 3, "Epsilon": 3, "Zeta": 3},
    "images_evaluation": {"Omega": 4, "Psi": 4, "Chi": 3},
}
DRAWINGS = 20


def draw_glyph(strokes: list[tuple[int, int, int, int]], rng: random.Random) -> Image.Image:
    """A 105x105 binary image of ``strokes``, each end moved by a few pixels."""
    image = Image.new("L", (105, 105), 255)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in strokes:
        jitter = [rng.randint(-4, 4) for _ in range(4)]
        draw.line((x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3]), fill=0, width=6)
    return image.convert("1")


def make_tiny_omniglot(root: Path, layout: dict = TINY_LAYOUT, drawings: int = DRAWINGS,
                       seed: int = 0) -> Path:
    """Write a small Omniglot-shaped folder under ``root`` and return ``root``."""
    rng = random.Random(seed)
    image_id = 0
    for image_set, alphabets in layout.items():
        for alphabet, n_characters in alphabets.items():
            for c in range(1, n_characters + 1):
                folder = root / image_set / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                strokes = [tuple(rng.randint(10, 95) for _ in range(4)) for _ in range(3)]
                image_id += 1
                for d in range(1, drawings + 1):
                    draw_glyph(strokes, rng).save(folder / f"{image_id:04d}_{d:02d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A generated Omniglot-shaped folder (read-only use: copy it before changing it)."""
    return make_tiny_omniglot(tmp_path_factory.mktemp("tiny-omniglot"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tensor-cache")


@pytest.fixture(scope="session")
def tiny_data(tiny_root, cache_dir):
    from fewshot_cli.data.source import load_omniglot

    return load_omniglot(tiny_root, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real Omniglot (``FEWSHOT_DATA``); integration tests are skipped without it."""
    root = os.environ.get("FEWSHOT_DATA")
    if not root or not (Path(root) / "images_background").is_dir():
        pytest.skip("FEWSHOT_DATA does not point at an extracted Omniglot")
    return Path(root)


@pytest.fixture(scope="session")
def real_data(real_root):
    from fewshot_cli.data.source import load_omniglot

    return load_omniglot(real_root)


# Tests that need the real data skip without it; a line at the end says how many ran.
NEEDS = ("real_root", "real_data")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in NEEDS for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter):
    """Say how many tests that need the real data ran, and why the others skipped."""
    outcomes = {"passed": 0, "failed": 0, "skipped": 0}
    reasons: dict[str, int] = {}
    for outcome in outcomes:
        for report in terminalreporter.stats.get(outcome, []):
            if "integration" not in getattr(report, "keywords", {}) or report.when == "teardown":
                continue
            if outcome == "passed" and report.when != "call":
                continue
            outcomes[outcome] += 1
            if outcome == "skipped":
                reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
                reason = reason.removeprefix("Skipped: ")
                reasons[reason] = reasons.get(reason, 0) + 1
    if sum(outcomes.values()):
        line = ", ".join(f"{n} {o}" for o, n in outcomes.items() if n)
        why = "; ".join(f"{r} ({n})" for r, n in reasons.items())
        terminalreporter.write_line(
            f"tests on the real data: {line}" + (f" -- skipped because {why}" if why else "")
        )


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (small tensors, or bit-identical reductions),
    then torch's own count again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
