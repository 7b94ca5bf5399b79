"""Side-by-side speed measurements (``make bench`` or ``python -m benchmarks.run``)."""
