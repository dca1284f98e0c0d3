"""Errors the tools raise for bad user input; interfaces show them as one line (exit code 2)."""

from __future__ import annotations


class InputError(ValueError):
    """The user's input cannot be used as given (unsafe or malformed config, unknown model, missing file).

    The message is one line, says what is wrong and what to do; it never includes a traceback.
    """


class UnsafeInput(InputError):
    """Input refused for safety (a Python YAML tag, an alias bomb, absurd nesting, over the size limit, NUL bytes):
    never read in part, whatever else the input shows."""
