"""The one error type that means "the user asked for something that cannot be done": the command line
prints its message and exits with 2. Anything else is a bug and keeps its traceback."""


class UsageError(ValueError):
    """A bad argument, file or setting, with a message that says what to fix."""
