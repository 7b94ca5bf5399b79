"""The report layer: tables of evaluation rows (``aggregate``), the grid beside the published
numbers (``comparison``), the commands of a plan (``plan``), figures (``plots``) and split sizes
(``summary``)."""
