"""Only verified exports exist: write under a temporary name beside `--output`, verify, then publish exclusively.

A failed check removes the temporary file (or folder), or, with `--keep-failed`, moves it to `<name>.failed<ext>`
for inspection; `--output` itself is never touched. Without `--overwrite` the publish is exclusive (a hard link
for a file, a rename onto a missing or empty folder), so of two exports racing to one new name exactly one wins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deit.errors import DeitError
from deit.io import user_file_mode


class ExportRefused(DeitError):
    """The model cannot be exported in this format at all: refused before anything is written, so there is no
    unverified export for `--keep-failed` to keep."""


def failed_name(output: Path) -> Path:
    """Where `--keep-failed` keeps an export that failed its check: `model.failed.onnx`, `folder.failed`."""
    return output.with_name(f"{output.stem}.failed{output.suffix}")


@contextlib.contextmanager
def staged_file(output: Path, *, overwrite: bool, keep_failed: bool) -> Iterator[Path]:
    """Yield a temporary path (same folder and extension as `output`); publish it when the block succeeds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # The extension stays last: readers (our loader, ONNX Runtime) pick the format by it.
    handle, name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=f".partial{output.suffix}", dir=output.parent)
    os.close(handle)
    staged = Path(name)
    try:
        yield staged
    except BaseException:
        _discard(staged, output, keep_failed)
        raise
    os.chmod(staged, user_file_mode())  # mkstemp makes 0600; an export is shared like any file the user writes
    try:
        _publish_file(staged, output, overwrite)
    finally:
        staged.unlink(missing_ok=True)


def _publish_file(staged: Path, output: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(staged, output)
        return
    try:
        os.link(staged, output)  # atomic and exclusive: fails if the name exists, whoever made it
    except FileExistsError as error:
        raise DeitError(
            f"--output {output}: was created by someone else while this export ran; nothing was "
            f"replaced (pass --overwrite to replace it)"
        ) from error
    except OSError:  # a file system without hard links: rename after a check (a narrow race remains)
        if output.exists():
            raise DeitError(f"--output {output}: already exists; pass --overwrite to replace it") from None
        os.replace(staged, output)


@contextlib.contextmanager
def staged_folder(output: Path, *, overwrite: bool, keep_failed: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `output`; publish its files into `output` when the block succeeds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        yield staged
    except BaseException:
        _discard(staged, output, keep_failed)
        raise
    for path in staged.iterdir():
        os.chmod(path, user_file_mode())
    os.chmod(staged, user_file_mode(directory=True))  # mkdtemp makes 0700
    try:
        _publish_folder(staged, output, overwrite)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _publish_folder(staged: Path, output: Path, overwrite: bool) -> None:
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise DeitError(
                f"--output {output}: was filled by someone else while this export ran; nothing was "
                f"replaced (pass --overwrite to write into it)"
            )
        for path in staged.iterdir():  # --overwrite writes into the folder, as before: other files stay
            os.replace(path, output / path.name)
        return
    try:
        os.rename(staged, output)  # onto a missing or empty folder only: a filled one makes it fail
    except OSError as error:
        raise DeitError(
            f"--output {output}: was created by someone else while this export ran; nothing was replaced"
        ) from error


def _discard(staged: Path, output: Path, keep_failed: bool) -> None:
    if keep_failed and staged.exists():
        kept = failed_name(output)
        if kept.is_dir():
            shutil.rmtree(kept)
        os.replace(staged, kept)
    elif staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


__all__ = ["failed_name", "staged_file", "staged_folder"]
