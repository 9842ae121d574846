"""One run per output folder: an exclusive lock held for the run's life, and no silent replacement of a finished run.

The lock is `fcntl.flock` on `<output_dir>/.deit.lock`: the OS drops it when the process ends, however it ends,
so a killed run leaves no stale lock behind. The pid written inside only serves the error message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from deit.errors import DeitError

LOCK_NAME = ".deit.lock"


class RunFolderLock:
    """Held while a run may write into its folder; `release()` (or process exit) frees it."""

    def __init__(self, handle: IO[str] | None) -> None:
        self._handle = handle

    def release(self) -> None:
        """Free the folder for the next run."""
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None


def lock_run_folder(output_dir: str | Path) -> RunFolderLock:
    """Create `output_dir` and lock it; a DeitError naming the other run's pid when a live run holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run unlocked rather than not at all
        return RunFolderLock(None)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        handle = open(output_dir / LOCK_NAME, "a+")
    except OSError as error:
        raise DeitError(f"--output_dir {output_dir}: cannot be used ({error.strerror or error})") from error
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DeitError(
            f"--output_dir {output_dir}: another deit run (pid {owner}) is using this folder; wait for "
            f"it to finish or choose another folder"
        ) from error
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return RunFolderLock(handle)


def refuse_replacing_a_run(output_dir: str | Path, checkpoint_name: str, *, resuming: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over a folder that already holds a run's checkpoint."""
    existing = Path(output_dir) / checkpoint_name
    if existing.is_file() and not resuming and not overwrite:
        raise DeitError(
            f"--output_dir {output_dir}: already holds a run's {checkpoint_name}; pass --resume auto to "
            f"continue it, --overwrite-output to start over (its checkpoints are replaced), or choose "
            f"another folder"
        )


def refuse_replacing_a_best(
    output_dir: str | Path, best_name: str, checkpoint_name: str, *, resuming: bool, overwrite: bool
) -> None:
    """Refuse to start fresh over a folder holding a best checkpoint with no run beside it to continue: the new
    run's first epoch would overwrite a file it did not write."""
    folder = Path(output_dir)
    if resuming or overwrite or not (folder / best_name).is_file() or (folder / checkpoint_name).is_file():
        return
    raise DeitError(
        f"--output_dir {output_dir}: holds a {best_name} but no {checkpoint_name} to continue; a new run would "
        f"overwrite it: pass --resume {folder / best_name} to continue from it, --overwrite-output to start over, "
        f"or choose another folder"
    )
