"""fewshot_cli: MAML and Prototypical Networks baselines on Omniglot.

Each concept lives in one module named after it:

- ``source``: where Omniglot comes from (download or extracted copy) and its tensor cache
- ``splits``: which characters belong to train / validation / test
- ``episodes``: N-way K-shot episodes with learn2learn's MetaDataset and task transforms
- ``backbone``: the Conv-4 embedding network shared by both algorithms
- ``maml`` and ``protonet``: the two meta-learning algorithms
- ``training`` and ``evaluation``: the meta-training loop and the test protocol
- ``results`` and ``aggregate``: evaluation CSV rows and the tables built from them
"""

import contextlib
import io

__version__ = "0.1.0"

# learn2learn imports gym, which prints a multi-line "unmaintained" notice on stderr
# at import time; it is noise for a command-line tool, so swallow it once here.
with contextlib.redirect_stderr(io.StringIO()):
    import learn2learn  # noqa: F401,E402
