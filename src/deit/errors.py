"""The one exception type users see: the CLI prints it on one line and exits non-zero."""


class DeitError(Exception):
    """A user-facing error (bad flag, bad file, bad configuration); its message names the culprit."""


def short_list(items: list[str], limit: int = 5) -> str:
    """`a, b, c (+4 more)`: names for a one-line error message."""
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`): a name from a file never splits or recolours a line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))
