"""Each algorithm's paper protocol, as data: its defaults, published numbers, split, budgets and
plot colours. The algorithm modules hold the maths; ``run.config`` fills a run's unset options
from ``Paper.defaults``, ``run.grid`` reads the budgets, the report layer the rest.

The budgets' measurements (what each schedule reached, at what cost) are in results/schedule.

Example:
    >>> PAPERS["maml"].defaults.at(20, 1)["inner_lr"], PAPERS["protonet"].defaults.at(60, 5)["queries"]
    (0.1, 5)
"""

from __future__ import annotations

from fewshot_cli.algorithms.paper import (
    BudgetSettings,
    DatasetProtocol,
    Defaults,
    Paper,
    Published,
)

# The MAML paper's Omniglot hyper-parameters (Finn et al., 2017, and its reference code).
MAML_DEFAULTS = Defaults(
    fixed={"backbone": "conv4-strided", "bn_running_stats": False, "lr_halve_every": 0},
    by_ways={
        5: dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=32),
        20: dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=16),
    },
)
# The cpu budget's 20-way MAML cells adapt as the 5-way ones: fewer, larger inner steps.
FIVE_WAY_ADAPTATION = {
    k: MAML_DEFAULTS.by_ways[5][k] for k in ("inner_lr", "inner_steps", "test_inner_steps")
}
# MAML's reference length for `paper`.
VARIANT_BUDGETS = {"paper": BudgetSettings(60000, 600, {"first_order": False})}
# `cpu` (results/schedule/metasgd-anil.md): MAML's 5w1s schedule. Meta-SGD tests its 1-shot
# models at 5 shots, as Li et al.; its 20-way cell trains from the 5-way model. ANIL's backbone
# from 5-way training serves every cell: only its head adapts, at any ways.
CPU_VARIANTS = {
    "metasgd": BudgetSettings(
        {(5, 1): 4500, (20, 1): 2400},
        600,
        {"meta_batch": 16, "first_order": False, "lr": 3e-3, "queries": 5},
        cell_options={
            (5, 1): {"lr_halve_every": 1000},
            (20, 1): {"lr": 1e-3, "lr_halve_every": 1200, "inner_lr": 0.4},
        },
        starts_from={(20, 1): (5, 1)},
        tested_with={(5, 5): (5, 1), (20, 5): (20, 1)},
    ),
    "anil": BudgetSettings(
        {(5, 1): 6000},
        600,
        {
            "meta_batch": 16,
            "first_order": False,
            "lr": 5e-3,
            "lr_halve_every": 1000,
            "queries": 5,
            "inner_steps": 5,
            "test_inner_steps": 5,
        },
        tested_with={(5, 5): (5, 1), (20, 1): (5, 1), (20, 5): (5, 1)},
    ),
}
# `quick`: 5 training queries per class, as MAML's (results/schedule/metasgd-anil.md); ANIL
# takes MAML's 5 inner steps at a larger meta learning rate, cheap since its head alone adapts.
QUICK_VARIANTS = {
    "metasgd": BudgetSettings(
        300, 100, {"meta_batch": 8, "first_order": False, "lr": 3e-3, "queries": 5}
    ),
    "anil": BudgetSettings(
        500,
        100,
        {
            "meta_batch": 8,
            "first_order": False,
            "lr": 1e-2,
            "queries": 5,
            "inner_steps": 5,
            "test_inner_steps": 5,
        },
    ),
}

# mini-ImageNet (84x84 RGB): Finn et al.'s network has 32 filters and max-pooling, 5 inner
# steps of 0.01 (10 at test), meta-batch 4 at 1 shot and 2 at 5, 15 queries per class. CIFAR-FS
# (32x32 RGB) has no numbers in these papers: it takes the same settings.
MINI_DEFAULTS = Defaults(
    fixed=dict(
        backbone="conv4",
        filters=32,
        bn_running_stats=False,
        lr_halve_every=0,
        inner_lr=0.01,
        inner_steps=5,
        test_inner_steps=10,
    ),
    by_shots={1: dict(meta_batch=4), 5: dict(meta_batch=2)},
    queries=15,
)
# Short budgets for trying a mini-ImageNet copy on a CPU (no accuracy on the real data measured).
MINI_BUDGETS = {
    "quick": BudgetSettings(100, 100, {"meta_batch": 4, "first_order": True}),
    "cpu": BudgetSettings(2000, 600, {"first_order": True}),
    "paper": BudgetSettings(60000, 600, {"first_order": False}),
}
MINI_META_SGD = Defaults(
    fixed={**MINI_DEFAULTS.fixed, "inner_steps": 1, "test_inner_steps": 1},
    by_shots=MINI_DEFAULTS.by_shots,
    queries=15,
)


def _image_datasets(defaults: Defaults, published: Published, budgets=None, ways=None) -> dict:
    """mini-ImageNet with its numbers, CIFAR-FS with its settings only."""
    budgets, ways = budgets or MINI_BUDGETS, ways or {}
    return {
        "mini-imagenet": DatasetProtocol(defaults, published, budgets, ways),
        "cifar-fs": DatasetProtocol(defaults, None, budgets, ways),
    }


PAPERS = {
    "maml": Paper(
        default_ways=5,
        defaults=Defaults(
            fixed={**MAML_DEFAULTS.fixed, "engine": "l2l"}, by_ways=MAML_DEFAULTS.by_ways
        ),
        published=Published(
            {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
            "Finn, Abbeel & Levine (2017), Model-Agnostic Meta-Learning, Table 1 (Omniglot)",
        ),
        # The paper: 1200 training characters with rotation augmentation (ours: 1100/100/423).
        split="random",
        # Meta-batch 16 and Adam 3e-3 learned more per CPU second than the paper's 32 and 1e-3;
        # each cell's engine is the faster one on 2 CPU threads (results/schedule).
        budgets={
            "quick": BudgetSettings(
                600,
                100,
                {
                    "meta_batch": 16,
                    "lr": 3e-3,
                    "engine": "vmap",
                    "first_order": False,
                    "queries": 5,
                },
            ),
            # 5w1s trains first and the other cells start from its model; the 20-way cells adapt
            # as the 5-way ones, which makes second order affordable at 20w5s.
            "cpu": BudgetSettings(
                {(5, 1): 6000, (5, 5): 1000, (20, 1): 4200, (20, 5): 1200},
                600,
                {"meta_batch": 16, "lr": 3e-3, "engine": "vmap", "first_order": False},
                cell_options={
                    (5, 1): {"queries": 5, "lr_halve_every": 1000},
                    (5, 5): {"engine": "l2l"},
                    (20, 1): {
                        "engine": "l2l",
                        "queries": 5,
                        "lr": 1e-3,
                        "lr_halve_every": 1800,
                        **FIVE_WAY_ADAPTATION,
                    },
                    (20, 5): {"engine": "l2l", "lr": 1e-3, **FIVE_WAY_ADAPTATION},
                },
                starts_from={(5, 5): (5, 1), (20, 1): (5, 1), (20, 5): (5, 1)},
            ),
            # 60000 meta-iterations, as the reference code's Omniglot commands.
            "paper": BudgetSettings(60000, 600, {"first_order": False, "engine": "vmap"}),
        },
        colors={"ours": "#1f77b4", "first": "#17becf", "paper": "#aec7e8"},
        datasets=_image_datasets(
            MINI_DEFAULTS,
            Published(
                {(5, 1): 48.70, (5, 5): 63.11}, "Finn et al. (2017), Table 1 (mini-ImageNet)"
            ),
        ),
    ),
    "protonet": Paper(
        default_ways=60,
        defaults=Defaults(
            fixed={
                "backbone": "conv4",
                "bn_running_stats": True,
                "lr_halve_every": 2000,
                "test_ways": 5,
            },
            queries=5,
        ),
        published=Published(
            {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9},
            "Snell, Swersky & Zemel (2017), Prototypical Networks, Table 1 (Omniglot)",
        ),
        # 1028 / 172 / 423 characters, rotations as classes.
        split="vinyals",
        # Fixed training ways: one model per shot count serves its 5- and 20-way cells.
        budgets={
            "quick": BudgetSettings(200, 100, {"ways": 60}),
            # 1-shot: three of the paper's learning-rate halvings (every 2000 episodes).
            "cpu": BudgetSettings(
                {(5, 1): 6000, (20, 1): 6000, (5, 5): 1500, (20, 5): 1500}, 1000, {"ways": 60}
            ),
            "paper": BudgetSettings(20000, 1000, {"ways": 60}),
        },
        colors={"ours": "#d62728", "paper": "#ff9896"},
        # 30-way training for 1 shot, 20-way for 5 shots, 15 queries, 64 filters flattened.
        datasets=_image_datasets(
            Defaults(
                fixed={
                    "backbone": "conv4",
                    "filters": 64,
                    "bn_running_stats": True,
                    "lr_halve_every": 2000,
                    "test_ways": 5,
                },
                queries=15,
            ),
            Published(
                {(5, 1): 49.42, (5, 5): 68.20}, "Snell et al. (2017), Table 2 (mini-ImageNet)"
            ),
            {
                name: BudgetSettings(
                    n,
                    600 if name != "quick" else 100,
                    cell_options={(5, 1): {"ways": 30}, (5, 5): {"ways": 20}},
                )
                for name, n in (("quick", 100), ("cpu", 2000), ("paper", 20000))
            },
            ways={1: 30, 5: 20},
        ),
    ),
    "metasgd": Paper(
        default_ways=5,
        # MAML's settings (the inner rate as the rates' start), one adaptation step as Li et al.
        defaults=Defaults(
            fixed=MAML_DEFAULTS.fixed,
            by_ways={
                w: {**v, "inner_steps": 1, "test_inner_steps": 1}
                for w, v in MAML_DEFAULTS.by_ways.items()
            },
        ),
        published=Published(
            {(5, 1): 99.53, (5, 5): 99.93, (20, 1): 95.93, (20, 5): 98.97},
            "Li, Zhou, Chen & Li (2017), Meta-SGD, Table 2 (Omniglot; its 5-shot models were "
            "meta-trained 1-shot)",
        ),
        split="random",
        budgets={
            **VARIANT_BUDGETS,
            "quick": QUICK_VARIANTS["metasgd"],
            "cpu": CPU_VARIANTS["metasgd"],
        },
        colors={"ours": "#2ca02c", "first": "#bcbd22", "paper": "#98df8a"},
        datasets=_image_datasets(
            MINI_META_SGD,
            Published({(5, 1): 50.47, (5, 5): 64.03}, "Li et al. (2017), Table 3 (mini-ImageNet)"),
        ),
    ),
    "anil": Paper(
        default_ways=5,
        # Raghu et al. use MAML's Omniglot setups.
        defaults=MAML_DEFAULTS,
        published=Published(
            {(20, 1): 96.2, (20, 5): 98.0},
            "Raghu, Raghu, Bengio & Vinyals (2020), Rapid Learning or Feature Reuse?, Table 2 "
            "(Omniglot 20-way; mean of 3 seeds; no 5-way numbers)",
        ),
        split="random",
        budgets={**VARIANT_BUDGETS, "quick": QUICK_VARIANTS["anil"], "cpu": CPU_VARIANTS["anil"]},
        colors={"ours": "#9467bd", "first": "#e377c2", "paper": "#c5b0d5"},
        datasets=_image_datasets(
            MINI_DEFAULTS,
            Published({(5, 1): 46.7, (5, 5): 61.5}, "Raghu et al. (2020), Table 2 (mini-ImageNet)"),
        ),
    ),
}


# Published test accuracies (%) on Omniglot, by (algorithm, ways, shots).
PUBLISHED = {
    (name, ways, shots): value
    for name, paper in PAPERS.items()
    for (ways, shots), value in paper.published.accuracy.items()
}


def published(algorithm: str, ways: int, shots: int, dataset: str = "omniglot") -> float | None:
    """The published test accuracy (%) of a cell on ``dataset``, or None.

    Example:
        >>> published("maml", 5, 1), published("protonet", 5, 5, "mini-imagenet")
        (98.7, 68.2)
    """
    paper = PAPERS.get(algorithm)
    numbers = paper.published_on(dataset) if paper else None
    return numbers.accuracy.get((ways, shots)) if numbers else None


def published_source(algorithm: str, dataset: str = "omniglot") -> str | None:
    """Where ``published`` takes the numbers of ``algorithm`` on ``dataset`` from."""
    paper = PAPERS.get(algorithm)
    numbers = paper.published_on(dataset) if paper else None
    return numbers.source if numbers else None
