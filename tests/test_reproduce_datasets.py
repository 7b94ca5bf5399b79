"""reproduce on a dataset other than Omniglot: its own split, no rotations, rows recording the
dataset, and commands that name it."""

import pickle

import pandas as pd
from test_mini_imagenet import CLASSES, shapes

from fewshot_cli.algorithms.papers import BudgetSettings, published
from fewshot_cli.data.mini_imagenet import FILES
from fewshot_cli.report.plan import plan_commands, report_command
from fewshot_cli.run.budgets import Budget, get_budget
from fewshot_cli.run.reproduce import reproduce

PER_CLASS = 16  # a test episode draws 1 shot + 15 queries per class


def write_pickles(folder):
    """learn2learn's three files, with enough images per class for reproduce's test episodes."""
    folder.mkdir(parents=True)
    for part, names in CLASSES.items():
        images = shapes(len(names) * PER_CLASS, len(part))
        class_dict = {
            n: list(range(c * PER_CLASS, (c + 1) * PER_CLASS)) for c, n in enumerate(names)
        }
        with open(folder / FILES[part], "wb") as handle:
            pickle.dump({"image_data": images, "class_dict": class_dict}, handle)


TINY = Budget(
    "tiny",
    ("2w1s",),
    {
        "protonet": BudgetSettings(2, 3, {"ways": 3, "queries": 1, "image_size": 24}),
        "maml": BudgetSettings(
            2,
            3,
            {
                "meta_batch": 2,
                "queries": 1,
                "first_order": True,
                "image_size": 24,
                "inner_steps": 1,
                "test_inner_steps": 1,
            },
        ),
    },
    val_every=2,
    val_episodes=2,
    dataset="mini-imagenet",
)


def run(tmp_path, lines):
    reproduce(tmp_path / "out", TINY, data_root=tmp_path / "mini", device="cpu", progress=False,
              echo=lines.append)


def test_reproduce_trains_and_tests_on_mini_imagenet_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    write_pickles(tmp_path / "mini")
    lines = []
    run(tmp_path, lines)
    rows = pd.read_csv(tmp_path / "out" / "eval.csv").set_index("algorithm")
    assert sorted(rows.index) == ["maml", "protonet"]
    assert set(rows["dataset"]) == {"mini-imagenet"} and set(rows["split"]) == {"ravi"}
    assert set(rows["image_size"]) == {24} and set(rows["channels"]) == {3}
    assert not rows["rotations"].any()
    assert rows.loc["maml", "filters"] == 32 and rows.loc["protonet", "filters"] == 64
    # Run again: both cells are found done.
    lines = []
    run(tmp_path, lines)
    assert len([line for line in lines if line.endswith("skipped")]) == 2


def test_budgets_on_other_datasets_have_the_papers_cells_and_numbers(tmp_path):
    budget = get_budget("quick", "mini-imagenet")
    assert budget.cells == ("5w1s", "5w5s") and budget.dataset == "mini-imagenet"
    assert set(budget.algorithms) == {"maml", "protonet", "metasgd", "anil"}
    commands = plan_commands(tmp_path, budget)
    assert all("--dataset mini-imagenet" in c for c in commands)
    assert "protonet-30w1s" in " ".join(commands) and "protonet-20w5s" in " ".join(commands)
    assert "--dataset mini-imagenet" in report_command(tmp_path, budget)
    assert published("protonet", 5, 1, "mini-imagenet") != published("protonet", 5, 1)
    assert published("maml", 5, 1, "cifar-fs") is None
