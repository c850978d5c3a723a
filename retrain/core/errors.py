"""The one exception type that means "the user's input is wrong", as opposed to a bug."""


class InputError(Exception):
    """Bad input or an unusable environment: the shell prints the message as one line and exits with code 2."""
