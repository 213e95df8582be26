"""``python -m eigdist`` runs the ``eigdist`` command (eigdist/__init__.py has dropped the working folder from sys.path)."""

import sys

from eigdist.cli.main import main

sys.exit(main())
