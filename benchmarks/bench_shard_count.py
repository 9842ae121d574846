"""The start-up check of `--data-set WDS`: records per shard counted from the tar headers, ours vs `tarfile`.

`deit.data.shards.count_records` (the engine's own function) reads each ustar/pax header with one `pread`;
the alternative is `tarfile`'s member objects. Both count the same shard, written by `deit data pack`'s own
`pack_split`, in one process, in alternation.

    python benchmarks/bench_shard_count.py --records 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from deit.data.pack import pack_split
from deit.data.shards import _ustar_keys, count_records


def write_shard(folder: Path, records: int, image_bytes: int) -> str:
    """A shard written by `deit data pack`'s own `pack_split` (webdataset's writer: a pax header per member)."""
    image = folder / "image.jpg"
    image.write_bytes(os.urandom(image_bytes))
    shards = pack_split([(str(image), index % 10) for index in range(records)], folder, "train", records)
    return str(folder / shards[0]["file"])


def with_tarfile(path: str) -> int:
    """The records counted by `tarfile`'s members."""
    with tarfile.open(path) as archive:
        return len({member.name.partition(".")[0] for member in archive if member.isfile()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--image-bytes", type=int, default=110_000, help="ImageNet's mean JPEG is ~110 kB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        shard = write_shard(Path(folder), args.records, args.image_bytes)
        assert count_records(shard) == with_tarfile(shard) == args.records
        assert _ustar_keys(shard) is not None  # the header reader, not its tarfile fallback, is what is timed
        times: dict[str, list[float]] = {"tarfile": [], "deit": []}
        for _ in range(args.rounds):
            for name, count in (("tarfile", with_tarfile), ("deit", count_records)):
                started = time.perf_counter()
                count(shard)
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"load average {os.getloadavg()[0]:.1f}; {args.records} records, warm page cache")
    for name, value in medians.items():
        print(f"{name:8s} {value * 1000:7.1f} ms per shard")
    print(f"ratio tarfile/deit x{medians['tarfile'] / medians['deit']:.2f}")


if __name__ == "__main__":
    main()
