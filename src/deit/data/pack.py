"""`deit data pack`: an ImageFolder layout (`train/<class>/*`, `val/<class>/*`) to tar shards + `index.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deit.data.shards import INDEX_NAME
from deit.errors import DeitError


def pack_split(samples: list[tuple[str, int]], output: Path, split: str, shard_size: int) -> list[dict[str, Any]]:
    """Write `samples` ((path, label), in order) as `<split>-NNNNNN.tar`; returns each shard's file and count."""
    import webdataset as wds

    shards: list[dict[str, Any]] = []
    for start in range(0, len(samples), shard_size):
        name = f"{split}-{len(shards):06d}.tar"
        chunk = samples[start:start + shard_size]
        with wds.TarWriter(str(output / name)) as writer:
            for offset, (path, label) in enumerate(chunk):
                extension = Path(path).suffix.lower().lstrip(".") or "jpg"
                writer.write({"__key__": f"{start + offset:09d}", extension: Path(path).read_bytes(),
                              "cls": str(label).encode()})
        shards.append({"file": name, "count": len(chunk)})
    return shards


def pack_folder(data_path: str, output: str | Path, *, shard_size: int = 1000,
                report_dir: str | None = None) -> dict[str, Any]:
    """Pack both splits of `data_path` into `output` (a new or empty folder); returns the index written."""
    from deit.data.datasets import build_folder_split

    if shard_size < 1:
        raise DeitError(f"--shard-size {shard_size}: must be at least 1")
    output = Path(output)
    if output.is_file() or (output.is_dir() and any(output.iterdir())):
        raise DeitError(f"--output {output}: exists and is not an empty folder (shards are never written over)")
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("val", False)):
        dataset = build_folder_split(data_path, train=train, transform=None, report_dir=report_dir)
        classes = list(dataset.classes)
        splits[split] = dataset.samples
    output.mkdir(parents=True, exist_ok=True)
    index = {"classes": classes, "splits": {}}
    for split, samples in splits.items():
        shards = pack_split(samples, output, split, shard_size)
        index["splits"][split] = {"count": sum(s["count"] for s in shards), "shards": shards}
    (output / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index


__all__ = ["pack_folder", "pack_split"]
