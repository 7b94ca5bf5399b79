"""The names users choose from on the command line, importable without torch or pandas.

Each constant belongs to a library module that re-exports it (``data.splits.SPLITS``,
``algorithms.backbone.BACKBONES``...); it is defined here so that ``fewshot --help`` lists the
choices without importing the heavy modules that use them. Algorithm names come from
``algorithms.registry.NAMES``, which is light already.

Example:
    >>> from fewshot_cli.choices import SPLITS
    >>> SPLITS[0]
    'lake'
"""

SPLITS = ("lake", "vinyals", "random")  # data.splits: the ways to split Omniglot's classes
PARTS = ("train", "val", "test", "trainval")  # data.splits: the parts of a split
BACKBONES = ("conv4", "conv4-strided")  # algorithms.backbone: the embedding networks
BN_MODES = ("batch", "support", "running")  # algorithms.base: BatchNorm statistics at test time
# One line per mode, for help texts and notices (algorithms.base defines them).
BN_MODE_HELP = {
    "batch": "the queries in one batch with the support images, normalised together (a "
    "query's prediction depends on the other queries)",
    "support": "each query in a batch of its own with the support images (a query's "
    "prediction depends on the support images and on it alone)",
    "running": "the statistics gathered in training, each image on its own",
}
INVERT_MODES = ("auto", "yes", "no")  # predict: whether to invert the user's images
FORMATS = ("table", "markdown", "csv")  # report.aggregate: what aggregate writes
COMPARISON_FORMATS = ("table", "markdown")  # report.comparison: what format_comparison writes
ENGINES = ("l2l", "vmap")  # algorithms.maml_vmap: MAML's engines (learn2learn's loop, vmap)
# algorithms.maml_graph: whether training captures its step in a CUDA graph (--cuda-graph)
CUDA_GRAPH_MODES = ("auto", "on", "off")
PRECISIONS = ("fp32", "tf32")  # run.precision: float precision of products and convolutions
BUDGETS = ("quick", "cpu", "paper")  # run.grid: the names of its BUDGETS, in order
