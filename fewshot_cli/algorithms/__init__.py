"""The algorithm layer: the shared Conv-4 (``backbone``), the ``Algorithm`` interface (``base``),
one module per algorithm (``maml``, ``protonet``) and the ``registry`` mapping names to them.

Nothing outside this package branches on an algorithm's name: it asks the registry.
"""
