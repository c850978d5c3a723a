"""The one exception type that means "the user's input is wrong", as opposed to a bug."""


class InputError(Exception):
    """Bad input or an unusable environment: the shell prints the message as one line and exits with code 2."""


class ExecutorStopped(InputError):
    """The cluster computing a job's images failed part-way (a lost node or actor): what came back is kept."""
