"""The one exception type for bad user input.

Anything raised as `UserError` is reported by the command line as a single line
(`spos: error: ...`) with exit status 2; its message says what was wrong and how to mend it.
"""


class UserError(ValueError):
    """Bad input from the user: a wrong name, a malformed file, an impossible setting."""
