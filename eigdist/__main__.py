"""``python -m eigdist`` runs the ``eigdist`` command."""

import sys

from eigdist.cli.main import main

sys.exit(main())
