"""The one exception type that means "the user's input is wrong", as opposed to a bug."""


class RetrainError(Exception):
    """Bad input or an unusable environment: the CLI prints the message as one line and exits with code 2."""
