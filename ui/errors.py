"""Exit codes and the one-line user error every interface reports instead of a traceback."""

from __future__ import annotations

# Documented in README.md ("Exit codes"); stable for scripts.
EXIT_OK = 0            # diagnosed / command succeeded
EXIT_INTERNAL = 1      # a bug in ask-oom: one line, ASK_OOM_DEBUG=1 shows the traceback
EXIT_USAGE = 2         # bad usage or unreadable input (empty, binary, too large, bad YAML, missing file)
EXIT_NO_OOM = 3        # the input contains no memory error (the output still says what was found)
EXIT_UNAVAILABLE = 4   # a needed resource is missing: no CUDA device, no index, server unreachable
EXIT_DOES_NOT_FIT = 5  # fix/estimate/probe: nothing fits the GPU budget (closest option still printed)
EXIT_ALL_DUPLICATES = 6  # kb ingest: every document duplicates an existing case (nothing new written)
EXIT_BORDERLINE = 7    # check: the budget lies inside the error band (measure it with the probe)


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code
