"""The one exception type users see: the CLI prints it on one line and exits non-zero."""


class DeitError(Exception):
    """A user-facing error (bad flag, bad file, bad configuration); its message names the culprit."""
