"""One base for every error compkit reports to a user, so that each CLI catches one class and prints one line."""
from __future__ import annotations


class CompkitError(Exception):
    """A failure with a message meant for the user: what is wrong and what to do. CLIs print it as one line
    and exit non-zero; anything that is not a CompkitError is a bug and keeps its traceback."""

    exit_code = 2
