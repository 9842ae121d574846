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
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.integrity import tensor_digest

#: Above this many bytes (N x views x classes x 4) the table is not built and the teacher runs per step.
MAX_TABLE_BYTES = 1 << 30
_TABLES: dict[str, Tensor] = {}
_MAX_HEADER_BYTES = 1 << 16  # a stored table's safetensors header (names, shape, our metadata) is far smaller


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


def cached_table(
    key: str,
    compute: Callable[[], Tensor],
    cache_dir: str | Path | None,
    device: torch.device,
    *,
    shape: tuple[int, int, int] | None = None,
    origin: str = "",
) -> Tensor:
    """The table for `key`: from this process's memory, from `cache_dir/<key>.safetensors`, or computed (then
    stored in both). Concurrent processes wait on a lock file, so one computes and the others read.

    A stored table is data like any other: one that fails a check (readable, its tensor, `shape`, float32, the
    key and digest recorded when it was written, finite values) is rebuilt with one line saying why, never used.
    `origin` (what the table was computed from) is recorded in the file for whoever finds it."""
    if key in _TABLES:
        return _TABLES[key].to(device)
    if not cache_dir:
        _TABLES[key] = _finite(compute(), "the teacher's logits")
        return _TABLES[key]
    folder = Path(cache_dir)
    path = folder / f"teacher_table_{key}.safetensors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".teacher_table_{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table, why = _read_checked(path, key, shape) if path.exists() else (None, "")
            if table is None:
                if why:
                    warnings.warn(f"teacher table {path}: {why}; rebuilt from the teacher", stacklevel=2)
                table = _finite(compute(), "the teacher's logits")
                _store(table, path, key, origin)
    except OSError as error:
        raise DeitError(f"--teacher-table-dir {folder}: cannot be used ({error.strerror or error})") from error
    _TABLES[key] = table.to(device)
    return _TABLES[key]


def _read_checked(path: Path, key: str, shape: tuple[int, int, int] | None) -> tuple[Tensor | None, str]:
    """(the stored table, "") when it passes every check, else (None, why not)."""
    from safetensors import safe_open

    if not path.is_file():
        return None, "not a regular file"
    limit = (table_bytes(*shape) if shape else MAX_TABLE_BYTES) + _MAX_HEADER_BYTES
    if path.stat().st_size > limit:
        return None, f"{path.stat().st_size:,} bytes, more than a table of this shape takes"
    try:
        with safe_open(str(path), framework="pt") as handle:
            recorded = handle.metadata() or {}
            if "logits" not in handle.keys():
                return None, "holds no 'logits' tensor"
            table = handle.get_tensor("logits")
    except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError ...
        return None, f"unreadable ({str(error).strip().splitlines()[0][:200] if str(error).strip() else 'damaged'})"
    if table.dtype != torch.float32:
        return None, f"its logits are {table.dtype}, not float32"
    if shape is not None and tuple(table.shape) != tuple(shape):
        return None, f"its logits are {tuple(table.shape)}, not (images, views, classes) = {tuple(shape)}"
    if recorded.get("key") != key or recorded.get("sha256") != tensor_digest({"logits": table}):
        return None, "its contents do not match the key and digest recorded when it was written"
    if not bool(torch.isfinite(table).all()):
        return None, "it holds NaN or infinite logits"
    return table, ""


def _store(table: Tensor, path: Path, key: str, origin: str) -> None:
    from safetensors.torch import save_file

    table = table.detach().cpu().contiguous()
    metadata = {"key": key, "sha256": tensor_digest({"logits": table}), "origin": origin}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({"logits": table}, str(temporary), metadata=metadata)
        os.replace(temporary, path)  # readers never see a half-written file
    finally:
        temporary.unlink(missing_ok=True)


def _finite(table: Tensor, what: str) -> Tensor:
    if not bool(torch.isfinite(table).all()):
        raise DeitError(f"{what} are not finite (NaN or inf); the teacher cannot be used as it is")
    return table
