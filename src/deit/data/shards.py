"""`--data-set WDS`: tar shards written by `deit data pack`, read with the `webdataset` library.

A shard folder holds `train-000000.tar ...`, `val-000000.tar ...` and `index.json` (class names, and each
shard's sample count). Each sample is `<key>.<ext>` (the image bytes as stored) plus `<key>.cls` (class index).

Splitting: every epoch the shards are shuffled (seed + epoch, the same on every rank) and dealt round-robin to
the `world_size x num_workers` readers, so with a shard count divisible by that product every sample is read
exactly once per epoch (shards of equal size: `deit data pack --shard-size`). A reader whose shards hold fewer
samples than the fullest reader's starts its shards again, so every rank yields the same number of samples (DDP
needs equal steps), as `DistributedSampler` pads. Samples are shuffled in a `webdataset` shuffle buffer.
Undecodable records are skipped with one warning each, named `shard.tar:key`, and listed in `skipped_files.txt`.
"""

from __future__ import annotations

import io
import math
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from deit.data.images import to_rgb
from deit.data.skips import LOGGER, append_report
from deit.errors import DeitError
from deit.io import read_json_bounded, require_regular_file

INDEX_NAME = "index.json"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm")


def read_index(folder: Path) -> dict[str, Any]:
    """`index.json` of a shard folder: `classes` and, per split, its shards with their sample counts.

    The index is untrusted: its size and depth are bounded, every shard is a relative path inside `folder`
    (no `..`, no absolute path, no link leading out) and every count a whole number >= 0.
    """
    path = folder / INDEX_NAME
    if not path.exists():
        raise DeitError(f"--data-path {folder}: no {INDEX_NAME} (write shards with `deit data pack`)")
    index = read_json_bounded(path)
    try:
        classes = [str(name) for name in index["classes"]]
        splits = {
            str(name): [(_shard_name(s["file"], path), _count(s["count"], s["file"], path)) for s in split["shards"]]
            for name, split in index["splits"].items()
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise DeitError(f"{path}: not a shard index ({type(error).__name__}: {error})") from error
    return {"classes": classes, "splits": splits}


def _shard_name(name: Any, index: Path) -> str:
    """A shard's file name as the index gives it, refused unless it is a plain relative path inside its folder."""
    if not isinstance(name, str) or not name:
        raise DeitError(f"{index}: shard name {name!r} is not a file name")
    parts = PurePosixPath(name).parts
    if (
        name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts)
        or PurePosixPath(*parts).as_posix() != name
    ):
        raise DeitError(
            f"{index}: shard {name!r} is not a normalised relative path inside {index.parent} "
            f"(no '..', no absolute path)"
        )
    return name


def _count(value: Any, name: Any, index: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DeitError(f"{index}: shard {name!r} has count {value!r}; expected a whole number >= 0")
    return value


def resolve_shards(data_path: str, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and `(shard path, count)` of `split`; `data_path` is the folder or a brace pattern in it.

    Each shard is checked to lie in the folder and to hold the records the index counts (tar headers only)."""
    from braceexpand import braceexpand

    pattern = "{" in data_path or data_path.endswith(".tar")
    folder = Path(data_path).parent if pattern else Path(data_path)
    if not folder.is_dir():
        raise DeitError(f"--data-path {data_path}: no such folder")
    index = read_index(folder)
    listed = index["splits"].get(split)
    if listed is None:
        raise DeitError(f"{folder / INDEX_NAME}: no '{split}' split (has {', '.join(index['splits'])})")
    counts = dict(listed)
    if pattern and split == "train":
        names = [Path(name).name for name in braceexpand(Path(data_path).name)]
        unknown = [name for name in names if name not in counts]
        if unknown:
            raise DeitError(f"--data-path {data_path}: {unknown[0]} is not in {folder / INDEX_NAME}")
        listed = [(name, counts[name]) for name in names]
    inside = folder.resolve()
    shards = []
    for name, count in listed:
        path = folder / name
        if not path.exists():
            raise DeitError(f"{path}: shard listed in {folder / INDEX_NAME} is missing")
        if not path.resolve().is_relative_to(inside):  # a symlink that leaves the data folder
            raise DeitError(
                f"{path}: shard listed in {folder / INDEX_NAME} leads out of {folder} (to {path.resolve()})"
            )
        shards.append((str(require_regular_file(path)), count))
    check_counts(shards, folder / INDEX_NAME)
    return index["classes"], shards


def count_records(shard: str) -> int:
    """The records in a tar shard, from its headers alone (a record is one key, its members `key.*`).

    ustar headers and the pax header webdataset writes before each member (what `deit data pack` writes) are read
    with one `pread` each, about 6x faster than `tarfile`'s member objects (benchmarks/BENCHMARKS.md); anything
    else (GNU or v7 headers, links, global pax headers) goes to `tarfile`.
    """
    try:
        keys = _ustar_keys(shard)
        if keys is None:
            with tarfile.open(shard) as archive:
                keys = {member.name.partition(".")[0] for member in archive if member.isfile()}
    except (OSError, tarfile.TarError, ValueError) as error:
        raise DeitError(f"{shard}: not a readable tar shard ({type(error).__name__}: {error})") from error
    return len(keys)


_BLOCK = 512


def _ustar_keys(shard: str) -> set[str] | None:
    """The record keys of the regular files in `shard`, or None when a header needs `tarfile` (GNU, v7 ...)."""
    keys: set[str] = set()
    with open(shard, "rb") as handle:
        descriptor, offset, pax_path = handle.fileno(), 0, None
        end = os.fstat(descriptor).st_size
        while offset < end:  # tarfile, too, accepts an archive that stops after a member, without end blocks
            header = os.pread(descriptor, _BLOCK, offset)
            if len(header) < _BLOCK:
                raise tarfile.ReadError(f"truncated at byte {offset}")
            if header == bytes(_BLOCK):  # the end-of-archive block
                return keys
            kind, size_field = header[156:157], header[124:136]
            if header[257:265] != b"ustar\x0000" or kind not in (b"0", b"\0", b"5", b"x") or size_field[0] & 0x80:
                return None  # GNU or v7 headers, global pax, links, base-256 sizes: tarfile knows them
            size = int(size_field.split(b"\0")[0].strip() or b"0", 8)
            if kind == b"x":  # a pax header (webdataset writes one per member): it may rename the next member
                pax_path = _pax_path(os.pread(descriptor, size, offset + _BLOCK)) or pax_path
            elif kind == b"5":
                pax_path = None
            else:
                prefix, name = header[345:500].split(b"\0")[0], header[:100].split(b"\0")[0]
                path = pax_path or (prefix + b"/" + name if prefix else name).decode("utf-8", "surrogateescape")
                keys.add(path.partition(".")[0])
                pax_path = None
            offset += _BLOCK + -(-size // _BLOCK) * _BLOCK
            if offset > end:
                raise tarfile.ReadError(f"truncated: a member's data runs past the end ({end} bytes)")
        return keys


def _pax_path(records: bytes) -> str | None:
    """The `path` of a pax extended header's `<length> <key>=<value>\\n` records, if it sets one."""
    position = 0
    while position < len(records):
        length = records[position : position + 20].partition(b" ")[0]
        if not length.isdigit() or int(length) <= 0:
            raise tarfile.ReadError("damaged pax header")
        key, _, value = records[position + len(length) + 1 : position + int(length) - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        position += int(length)
    return None


def check_counts(shards: list[tuple[str, int]], index: Path) -> None:
    """Refuse an index whose record counts differ from the tars': the schedule is built from them."""
    for shard, count in shards:
        found = count_records(shard)
        if found != count:
            raise DeitError(f"{shard}: {index} says {count:,} records, the tar holds {found:,}")


class ShardDataset(IterableDataset):
    """One split of a shard folder as `(transform(image), label)`, each sample once per epoch across readers."""

    def __init__(
        self,
        data_path: str,
        *,
        train: bool,
        transform: Callable | None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        report_dir: str | None = None,
    ) -> None:
        self.classes, self.shards = resolve_shards(data_path, "train" if train else "val")
        self.train, self.transform, self.shuffle_buffer = train, transform, shuffle_buffer if train else 0
        self.seed, self.report_dir, self.epoch = seed, report_dir, 0
        self.rank, self.world_size, self.num_workers = 0, 1, 1
        self.skipped: list[tuple[str, str]] = []  # filled while reading, in each worker

    @property
    def count(self) -> int:
        """The declared number of samples in this split (the sum of the index's shard counts)."""
        return sum(count for _, count in self.shards)

    def configure(self, *, rank: int, world_size: int, num_workers: int) -> None:
        """Which rank of how many reads, with how many data-loader workers each."""
        self.rank, self.world_size, self.num_workers = rank, world_size, max(1, num_workers)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards and samples for `epoch` (the same shard order on every rank)."""
        self.epoch = epoch

    def per_reader(self) -> int:
        """Samples each training reader (rank x worker) yields per epoch: enough for the fullest reader's shards.

        Equal shards dealt evenly give exactly `count / readers`; otherwise the bound (most shards a reader gets
        times the largest shard) makes every reader cover its own shards, the shorter ones repeating a few.
        """
        readers = self.world_size * self.num_workers
        return math.ceil(len(self.shards) / readers) * max((count for _, count in self.shards), default=0)

    def __len__(self) -> int:
        return self.per_reader() * self.num_workers

    def reader_shards(self, reader: int, readers: int) -> list[tuple[str, int]]:
        """This epoch's shards of reader `reader` of `readers` (training: never empty; a reader with none borrows
        one)."""
        order = list(self.shards)
        if self.train:
            random.Random(self.seed + self.epoch).shuffle(order)
        mine = order[reader::readers]
        return mine or ([order[reader % len(order)]] if self.train else [])

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        import webdataset as wds

        info = get_worker_info()
        worker = info.id if info else 0
        reader = self.rank * self.num_workers + worker
        shards = self.reader_shards(reader, self.world_size * self.num_workers)
        # Validation reads each sample once (no padding); training pads to equal shares for DDP.
        target = self.per_reader() if self.train else sum(count for _, count in shards)
        rng = random.Random((self.seed + self.epoch) * 100_003 + reader)
        # A short reader starts its shards again, a pass at a time (one shuffle buffer per pass, so every sample
        # comes once before any comes twice), for a bounded number of passes so bad records cannot loop.
        urls = [{"url": path} for path, count in shards if count > 0]
        passes = math.ceil(target / max(1, sum(count for _, count in shards))) + 1 if self.train else 1
        produced = 0
        for _ in range(passes if urls else 0):
            stages: list[Any] = [lambda: iter(urls), wds.tarfile_to_samples(handler=self._bad_shard)]
            if self.shuffle_buffer > 1:
                stages.append(wds.shuffle(self.shuffle_buffer, initial=min(100, self.shuffle_buffer), rng=rng))
            for sample in wds.DataPipeline(*stages):
                if produced >= target:
                    return
                decoded = self._decode(sample)
                if decoded is not None:
                    produced += 1
                    yield decoded

    def _decode(self, sample: dict[str, Any]) -> tuple[Any, int] | None:
        from PIL import Image

        name = f"{Path(str(sample.get('__url__', '?'))).name}:{sample.get('__key__', '?')}"
        try:
            data = next(sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample)
            label = int(sample["cls"])
            if not 0 <= label < len(self.classes):
                raise ValueError(f"class index {label} outside 0..{len(self.classes) - 1}")
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                rgb = to_rgb(image)
        except StopIteration:
            return self._skip(name, "no image in the record")
        except Exception as error:  # Pillow raises many types for damaged bytes; a bad record is skipped
            reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(error).split("\n")[0])
            return self._skip(name, f"{type(error).__name__}: {reason}")
        return (self.transform(rgb) if self.transform else rgb), label

    def _skip(self, name: str, reason: str) -> None:
        LOGGER.warning("skipping unusable record %s: %s", name, reason)
        self.skipped.append((name, reason))
        if self.report_dir:
            append_report(self.report_dir, [(name, reason)])
        return None

    def _bad_shard(self, error: Exception) -> bool:
        self._skip(str(getattr(error, "filename", "") or "shard"), f"{type(error).__name__}: {error}")
        return True  # keep going with the next record or shard


__all__ = ["INDEX_NAME", "ShardDataset", "read_index", "resolve_shards"]
