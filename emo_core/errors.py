"""Exception types shared by the whole package.

``EMOInputError`` is the one user-facing error: the CLI turns it into a one-line message and exit
code 2, the ComfyUI nodes let its text reach the UI. Its message must name the input, what was
wrong, and what to do.
"""


class EMOError(Exception):
    """Base class for every error raised on purpose by emo_core."""


class EMOInputError(EMOError, ValueError):
    """Bad user input: a file, image, audio clip or setting that cannot be used as given."""


class CheckpointError(EMOInputError):
    """A weight file that is unreadable, unsafe, or does not match the expected architecture."""


class NoFaceError(EMOInputError):
    """No face was found where one is required."""


class EMOCancelled(EMOError):
    """Generation was cancelled through the cancel callback; nothing was written."""


class EMOTerminated(BaseException):
    """The process was asked to stop (SIGTERM); nothing was written.

    A BaseException like KeyboardInterrupt, so that no ``except Exception`` on the way (in emo_core
    or in a library) turns the stop into an ordinary error; cleanup (``finally``, writers'
    ``__exit__``) still runs."""


class OutputWriteError(EMOInputError):
    """The output file could not be written (disk full, file-size limit, read-only folder)."""
