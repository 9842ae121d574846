"""The teacher paid once: its logits for every (image, view) of an in-memory data set, computed in large batches.

Exact only when each training image's view comes from a finite set and nothing mixes or erases pixels: the
in-memory path's padded crop x flip on square images (`deit.data.memory.ViewSet`; 81 views at padding 4, 162 with
a flip), without mixup, cutmix or random erasing (`deit.engine.memory_path` refuses it otherwise). Then the
teacher's output for a sample is a lookup instead of a forward pass, and every student of the same teacher (the
demo trains several) shares one table: in memory within a process, and as a safetensors file keyed by the teacher
checkpoint's hash, the data and the view set (a lock makes concurrent students compute it once).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

#: Above this many bytes (N x views x classes x 4) the table is not built and the teacher runs per step.
MAX_TABLE_BYTES = 1 << 30
_TABLES: dict[str, Tensor] = {}


def table_bytes(images: int, views: int, classes: int) -> int:
    """Size of a float32 table."""
    return images * views * classes * 4


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_key(teacher_hash: str, data: str, views: str) -> str:
    """A short stable name for one (teacher weights, data, view set) table."""
    return hashlib.sha256(f"{teacher_hash}|{data}|{views}".encode()).hexdigest()[:24]


@torch.no_grad()
def compute_table(
    teacher: nn.Module,
    render: Callable[[Tensor, Tensor], Tensor],
    *,
    images: int,
    views: int,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> Tensor:
    """Teacher logits (images, views, classes), float32: `render(indices, view numbers)` makes each batch."""
    teacher.eval()
    flat_index = torch.arange(images * views, device=device)
    chunks = []
    for start in range(0, images * views, batch_size):
        keys = flat_index[start : start + batch_size]
        chunks.append(teacher(render(keys // views, keys % views)).float())
    logits = torch.cat(chunks)
    return logits.view(images, views, -1)


def cached_table(key: str, compute: Callable[[], Tensor], cache_dir: str | Path | None, device: torch.device) -> Tensor:
    """The table for `key`: from this process's memory, from `cache_dir/<key>.safetensors`, or computed (then
    stored in both). Concurrent processes wait on a lock file, so one computes and the others read."""
    if key in _TABLES:
        return _TABLES[key].to(device)
    if not cache_dir:
        _TABLES[key] = compute()
        return _TABLES[key]
    from safetensors.torch import load_file, save_file

    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"teacher_table_{key}.safetensors"
    with open(folder / f".teacher_table_{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            table = load_file(str(path))["logits"]
        else:
            table = compute()
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"logits": table.detach().cpu().contiguous()}, str(temporary))
            os.replace(temporary, path)  # readers never see a half-written file
    _TABLES[key] = table.to(device)
    return _TABLES[key]
