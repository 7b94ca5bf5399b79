"""``python -m fewshot_cli`` runs the ``fewshot`` command."""

import sys

from fewshot_cli.cli import main

sys.exit(main())
