"""Exit statuses of the ``eigdist`` command, shared by the entry point and the command modules."""

#: A user error: one line naming the bad input (argparse uses 2 as well).
USER_ERROR = 2
#: Interrupted by Ctrl-C: 128 + SIGINT, as a shell reports it.
INTERRUPTED = 130
