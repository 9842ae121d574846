"""The start-up check of `--data-set WDS`: records per shard counted from the tar headers, ours vs `tarfile`.

`deit.data.shards.count_records` (the engine's own function) reads each plain ustar header with one `pread`;
the alternative is `tarfile`'s member objects. Both count the same shard in one process, in alternation.

    python benchmarks/bench_shard_count.py --records 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from deit.data.shards import count_records


def write_shard(path: Path, records: int, image_bytes: int) -> None:
    """A shard as `deit data pack` writes it: `<key>.jpg` + `<key>.cls` per record."""
    payload = os.urandom(image_bytes)
    with tarfile.open(path, "w") as archive:
        for index in range(records):
            for extension, data in (("jpg", payload), ("cls", b"7")):
                info = tarfile.TarInfo(f"{index:09d}.{extension}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


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
        shard = str(Path(folder) / "train-000000.tar")
        write_shard(Path(shard), args.records, args.image_bytes)
        assert count_records(shard) == with_tarfile(shard) == args.records
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
