"""fewshot_cli: MAML and Prototypical Networks baselines on Omniglot.

Each concept lives in one module named after it:

- ``source``: where Omniglot comes from (download or extracted copy) and its tensor cache
- ``splits``: which characters belong to train / validation / test
- ``episodes``: N-way K-shot episodes with learn2learn's MetaDataset and task transforms
  (``transforms`` holds our rotation task transform)
- ``backbone``: the Conv-4 embedding network shared by both algorithms
- ``maml`` and ``protonet``: the two meta-learning algorithms
- ``config``, ``training`` and ``checkpoint``: run settings, the meta-training loop, run folders
- ``evaluation``: the test protocol (mean accuracy and 95% CI over seeded episodes)
- ``results`` and ``aggregate``: evaluation CSV rows and the tables built from them
- ``reproduce`` and ``plots``: the standard grid beside the published numbers, and figures
- ``predict``: classify a user's own images from a few labelled examples
- ``atomic`` and ``errors``: safe file writes, and the one-line error type of the CLI
"""

import contextlib
import io

__version__ = "0.1.0"

# learn2learn imports gym, which prints a multi-line "unmaintained" notice on stderr
# at import time; it is noise for a command-line tool, so swallow it once here.
with contextlib.redirect_stderr(io.StringIO()):
    import learn2learn  # noqa: F401,E402
