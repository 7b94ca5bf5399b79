"""The report layer: evaluation CSV rows (``results``), tables (``aggregate``), the standard grid
beside the published numbers (``reproduce``), figures (``plots``) and split sizes (``summary``)."""
