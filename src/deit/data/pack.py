"""`deit data pack`: an ImageFolder layout (`train/<class>/*`, `val/<class>/*`) to tar shards + `index.json`.

A pack is all or nothing: shards and index are written into a hidden staging folder beside `--output`
(`.<name>.incomplete-XXXX`, `index.json` last) that is renamed to `--output` only when complete. A write error
(disk full), Ctrl-C or SIGTERM removes the staging folder and says so in one line; only a kill -9 can leave one,
and its name says it is incomplete. The output may never lie inside the data it reads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deit.data.shards import INDEX_NAME
from deit.errors import DeitError
from deit.io import user_file_mode


def pack_split(samples: list[tuple[str, int]], output: Path, split: str, shard_size: int) -> list[dict[str, Any]]:
    """Write `samples` ((path, label), in order) as `<split>-NNNNNN.tar`; returns each shard's file and count.

    An `OSError` while writing carries the shard's path as its `filename`."""
    import webdataset as wds

    shards: list[dict[str, Any]] = []
    for start in range(0, len(samples), shard_size):
        name = f"{split}-{len(shards):06d}.tar"
        chunk = samples[start : start + shard_size]
        with _naming(output / name), wds.TarWriter(str(output / name)) as writer:
            for offset, (path, label) in enumerate(chunk):
                extension = Path(path).suffix.lower().lstrip(".") or "jpg"
                writer.write(
                    {"__key__": f"{start + offset:09d}", extension: Path(path).read_bytes(), "cls": str(label).encode()}
                )
        shards.append({"file": name, "count": len(chunk)})
    return shards


def pack_folder(
    data_path: str, output: str | Path, *, shard_size: int = 1000, report_dir: str | None = None
) -> dict[str, Any]:
    """Pack both splits of `data_path` into `output` (a new or empty folder); returns the index written."""
    from deit.data.datasets import build_folder_split

    if shard_size < 1:
        raise DeitError(f"--shard-size {shard_size}: must be at least 1")
    output = Path(output)
    source = Path(data_path).resolve()
    if output.resolve() == source or source in output.resolve().parents:
        raise DeitError(
            f"--output {output}: inside --data-path {data_path}; the shards would become part of the "
            f"data they are read from (choose a folder outside it)"
        )
    if output.is_file() or (output.is_dir() and any(output.iterdir())):
        raise DeitError(f"--output {output}: exists and is not an empty folder (shards are never written over)")
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("val", False)):
        dataset = build_folder_split(data_path, train=train, transform=None, report_dir=report_dir)
        classes = list(dataset.classes)
        splits[split] = dataset.samples
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.incomplete-", dir=output.parent))
    try:
        os.chmod(staging, user_file_mode(directory=True))  # mkdtemp makes 0700; the output gets the usual mode
        with _signals_interrupt():
            index = {"classes": classes, "splits": {}}
            for split, samples in splits.items():
                shards = pack_split(samples, staging, split, shard_size)
                index["splits"][split] = {"count": sum(s["count"] for s in shards), "shards": shards}
            with _naming(staging / INDEX_NAME):  # last: a folder with an index is a complete one
                (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
            os.replace(staging, output)  # an empty --output folder is replaced whole
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        what = "disk full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else (error.strerror or str(error))
        written = Path(error.filename).name if error.filename else output.name
        raise DeitError(f"--output {output}: {what} while writing {written}; nothing kept") from error
    except KeyboardInterrupt as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DeitError(f"--output {output}: interrupted before the pack was complete; nothing kept") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an `OSError` without a file name as one naming `path` (a failed `write` names no file)."""
    try:
        yield
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt meanwhile, so the staging folder is removed, not left."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: signals cannot be caught here, the staging name still says it all
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


__all__ = ["pack_folder", "pack_split"]
