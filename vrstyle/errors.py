"""The one exception type for mistakes a user can fix: the CLI prints its message as one line."""


class VrstyleError(Exception):
    """Bad input (arguments, files, models, configuration) explained in one line."""


EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a :class:`VrstyleError` (argparse's for bad arguments too),
so a supervisor can tell a mistake that restarting will not fix from a crash."""
