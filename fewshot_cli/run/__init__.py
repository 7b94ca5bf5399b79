"""The run layer: a run's settings (``config``), the training loop (``training``), the test
protocol (``evaluation``) and run directories with their checkpoints (``checkpoint``)."""
