"""Exception types shared by the library and the command line.

The command line maps them to its documented exit codes: :class:`InputError`
-> 3 (bad input), any other :class:`ProbewarpError` -> 4 (runtime failure).
"""


class ProbewarpError(Exception):
    """Base class of every error probewarp raises on purpose."""


class InputError(ProbewarpError, ValueError):
    """An input file or argument is invalid. The message names the file, the
    probe (index, and name where known) and the field."""


class RuntimeFailure(ProbewarpError, RuntimeError):
    """The work could not be done although the input was valid (GL context,
    disk full, a worker died ...)."""


# Exit codes of the command line (README "Command line").
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_RUNTIME = 4
