"""The ``eigdist`` command: argument parsing only, one module per command group."""
