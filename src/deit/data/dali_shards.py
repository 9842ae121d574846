"""`--data-set WDS` for the DALI loader: the records of `deit data pack` tar shards, read by byte range.

`ShardRecords` lists every record of a `ShardDataset`'s shards once (the tar headers only: member offsets and
sizes, plus each record's small `.cls` member), so the DALI loader treats records like files: one permutation
per epoch (seed + epoch), every record once per epoch across ranks, resumable. DALI reads a record's image
bytes with one `pread` (`RecordReader`, an `external_source`). Records without an image or with a bad class
index are skipped when listed, and records that fail to decode are skipped when DALI meets them, each by the
torch loader's own code (`ShardDataset._decode`), so with the same log line (`skipping unusable record
shard.tar:key: ...`) and report entry. Reading records in a random order costs seeks that the torch loader's
streaming avoids: on a local disk or page cache it does not matter; on network storage it may.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deit.data.shards import IMAGE_EXTENSIONS, ShardDataset
from deit.errors import DeitError


class Record(NamedTuple):
    """Where a record's image bytes are: the shard, the record key, the byte range and the image extension."""

    shard: str
    key: str
    offset: int
    size: int
    extension: str


class ShardRecords:
    """The records of a `ShardDataset`'s shards as a DALI `SampleSource` (`samples`, `classes`, `first_decodable`)."""

    def __init__(self, dataset: ShardDataset) -> None:
        self.dataset = dataset
        self.classes = dataset.classes
        self.samples: list[tuple[Record, int]] = []
        for shard, _ in dataset.shards:
            self.samples.extend(self._scan(shard))
        self._known_bad: set[int] = set()

    def _scan(self, shard: str) -> list[tuple[Record, int]]:
        images: dict[str, Record] = {}
        labels: dict[str, bytes] = {}
        try:
            with tarfile.open(shard) as archive:
                for member in archive:
                    key, _, extension = member.name.partition(".")
                    if extension == "cls":
                        labels[key] = archive.extractfile(member).read()  # type: ignore[union-attr]
                    elif extension.lower() in IMAGE_EXTENSIONS and member.isfile():
                        images[key] = Record(shard, key, member.offset_data, member.size, extension)
        except (OSError, tarfile.TarError) as error:
            raise DeitError(f"{shard}: not a readable tar shard ({type(error).__name__}: {error})") from error
        records = []
        for key in sorted(set(images) | set(labels)):
            sample = {"__url__": shard, "__key__": key, "cls": labels.get(key, b"")}
            if key not in images:
                self.dataset._skip(f"{Path(shard).name}:{key}", "no image in the record")
                continue
            label = self._label(sample)
            if label is not None:
                records.append((images[key], label))
        return records

    def _label(self, sample: dict[str, Any]) -> int | None:
        """The record's class index, or None after the torch loader's skip message for a bad one."""
        name = f"{Path(sample['__url__']).name}:{sample['__key__']}"
        try:
            label = int(sample["cls"])
        except ValueError as error:
            return self.dataset._skip(name, f"ValueError: {error}")
        if not 0 <= label < len(self.classes):
            return self.dataset._skip(name, f"ValueError: class index {label} outside 0..{len(self.classes) - 1}")
        return label

    def first_decodable(self, index: int) -> tuple[int, Any]:
        """The first record at or after `index` (wrapping) that decodes, and its image; the others are skipped
        and reported by the torch loader's `ShardDataset._decode`."""
        for attempt in range(len(self.samples)):
            candidate = (index + attempt) % len(self.samples)
            if candidate in self._known_bad:
                continue
            record, label = self.samples[candidate]
            decoded = self.dataset._decode(
                {
                    "__url__": record.shard,
                    "__key__": record.key,
                    record.extension: read_record(record),
                    "cls": str(label).encode(),
                }
            )
            if decoded is not None:
                return candidate, decoded[0]
            self._known_bad.add(candidate)
        raise DeitError(f"{self.dataset.shards[0][0]}: no record of the split decodes")


def read_record(record: Record) -> np.ndarray:
    """A record's image bytes (one read at its offset)."""
    return np.fromfile(record.shard, dtype=np.uint8, count=record.size, offset=record.offset)


class RecordReader:
    """DALI `external_source` callback (per sample): the `idx_in_epoch`-th record's bytes and label, wrapping
    past the end (the loader trims that padding, as DALI's file reader pads)."""

    def __init__(self, samples: list[tuple[Record, int]]) -> None:
        self.samples = samples

    def __call__(self, info: Any) -> tuple[np.ndarray, np.ndarray]:
        record, label = self.samples[info.idx_in_epoch % len(self.samples)]
        return read_record(record), np.array([label], dtype=np.int32)


__all__ = ["Record", "RecordReader", "ShardRecords", "read_record"]
