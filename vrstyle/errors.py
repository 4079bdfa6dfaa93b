"""The one exception type for mistakes a user can fix: the CLI prints its message as one line."""


class VrstyleError(Exception):
    """Bad input (arguments, files, models, configuration) explained in one line."""
