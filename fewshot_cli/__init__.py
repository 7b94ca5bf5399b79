"""fewshot_cli: MAML and Prototypical Networks baselines on Omniglot.

The package is layered; each layer imports only from the ones above it in this list:

- ``data``: Omniglot on disk and its tensor cache (``source``), splits (``splits``), seeded
  learn2learn episodes (``episodes``) and our rotation task transform (``transforms``)
- ``algorithms``: the Conv-4 ``backbone``, the ``Algorithm`` interface (``base``), one module
  per algorithm (``maml``, ``protonet``) and the ``registry`` of names
- ``run``: run settings (``config``), the meta-training loop (``training``), the test protocol
  (``evaluation``) and run directories (``checkpoint``)
- ``report``: evaluation CSV rows (``results``), tables (``aggregate``), the standard grid beside
  the published numbers (``reproduce``), figures (``plots``) and split sizes (``summary``)
- on top: ``predict`` (classify a user's own images) and ``cli`` (options only), with
  ``atomic`` (safe file writes) and ``errors`` (the one-line error type) used everywhere

Importing the package (and ``cli``) is light: torch, pandas, matplotlib and learn2learn are
imported by the modules that use them (learn2learn through ``l2l``, which silences gym), so
``fewshot --help`` answers at once.
"""

__version__ = "0.1.0"
