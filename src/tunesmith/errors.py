"""Errors a user sees. The CLI turns any TunesmithError into one line on stderr and exit status 2.

Every message names what is wrong (the file and line, the recipe key, the model directory) and,
where it helps, what to do about it.
"""


class TunesmithError(Exception):
    """Base of every user-facing error: a one-line message, no traceback."""


class RecipeError(TunesmithError):
    """The recipe (YAML file, --set override or CLI flag) is invalid."""


class DataError(TunesmithError):
    """A data file is missing, unreadable or malformed."""


class ModelError(TunesmithError):
    """A model name or directory cannot be resolved or loaded."""


class TrainingError(TunesmithError):
    """Training cannot go on (e.g. a NaN loss)."""


class RunError(TunesmithError):
    """A run directory is missing or incomplete."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be saved (disk full, permission denied) or a run cannot be resumed from one."""


class PreflightError(TunesmithError):
    """A preflight check found what would make the run useless (or could not run); nothing was trained."""


class TrainingInterrupted(TunesmithError):
    """SIGINT/SIGTERM stopped training after saving a checkpoint; the CLI exits with 128 + the signal number.
    `resumable` false: the run writes no checkpoint (DeepSpeed), so the CLI prints no resume command."""

    def __init__(self, message: str, *, exit_code: int = 130, checkpoint=None, resumable: bool = True):
        super().__init__(message)
        self.exit_code = exit_code
        self.checkpoint = checkpoint
        self.resumable = resumable


def one_line(exc: BaseException) -> str:
    """An exception from a library as one short line: its type and its message, whitespace folded."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__
SHOWN_LIMIT = 80  # characters of a value echoed in an error message


def shown(value, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` fit for a one-line error: at most ``limit`` characters, cut with an ellipsis.

    Built with reprlib, so a huge or deeply nested value (a YAML alias bomb) costs no more than a
    short one.
    """
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = limit + 2
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    text = repr(value[: limit + 1]) if isinstance(value, str) else short.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (a message part that echoes user input)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
