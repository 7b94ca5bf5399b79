"""The run layer: a run's settings (``config``) and what defines its results (``protocol``),
the training loop (``training``), the test protocol (``evaluation``) and its CSV rows
(``results``), run directories with their checkpoints (``checkpoint``), and the standard grid
(``grid``) trained and tested by ``reproduce``."""
