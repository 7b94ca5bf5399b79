"""The data layer: Omniglot on disk (``source``), its splits (``splits``), seeded episodes
(``episodes``) and our task transform (``transforms``). Knows nothing of models."""
