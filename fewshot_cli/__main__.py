"""``python -m fewshot_cli`` runs the ``fewshot`` command."""

import sys

from fewshot_cli.cli import main

if __name__ == "__main__":  # not when imported (pytest --doctest-modules imports every module)
    sys.exit(main())
