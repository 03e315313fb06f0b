"""The one exception type for bad user input.

Anything raised as `UserError` is reported by the command line as a single line
(`spos: error: ...`) with exit status 2; its message says what was wrong and how to mend it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserError(ValueError):
    """Bad input from the user: a wrong name, a malformed file, an impossible setting."""


@contextlib.contextmanager
def naming(where: str) -> Iterator[None]:
    """Inside, every UserError's line starts with ``where`` (the file being read), unless it names it
    already: the checks of a payload's parts need not know which file it came from."""
    try:
        yield
    except UserError as error:
        if str(error).startswith(where):
            raise
        raise UserError(f"{where}: {error}") from None
