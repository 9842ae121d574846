"""The teacher paid once per stream: its outputs for every step of a run, stored, verified and replayed.

A label folder holds, per rank, plain little-endian arrays laid out (epoch, step, sample, ...) and one
`manifest.json` (written last, atomically) that keys what the outputs depend on -- the seeded stream
(`deit.data.seeded_stream`), the teacher -- and a sha256 per rank, array and epoch of the bytes. Kinds:

- `hard`: the teacher's class per sample (uint16, int32 above 65,535 classes): what hard distillation reads;
- `logits`: every logit, float32: soft distillation exactly (and hard: the argmax);
- `topk`: the k largest logits, their classes, and one `rest` logit per sample such that the other C - k
  classes, all given it, carry their true probability mass at the labels' temperature: soft distillation
  approximately (the mass among the other classes is spread evenly; `topk_kl` in the manifest says how much
  that loses) and hard exactly.

Nothing here unpickles: the arrays are raw bytes read through `numpy.memmap`, and a manifest can only make a
reader map a file whose size it has checked, one step's slice at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.io import atomic_write, dumps_strict, read_json_bounded

FORMAT = "deit-teacher-labels"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("hard", "logits", "topk")
#: Largest manifest read (it holds one digest per rank, array and epoch).
MAX_MANIFEST_BYTES = 16 * 2**20
_MAX_CLASSES, _MAX_COUNT = 10_000_000, 2**40
_DTYPES = {"uint16": np.dtype("<u2"), "int32": np.dtype("<i4"), "float32": np.dtype("<f4")}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Layout:
    """What one rank's files hold: `epochs` x `steps` x `batch` samples of kind `kind` over `classes`."""

    kind: str
    classes: int
    epochs: int
    steps: int
    batch: int
    k: int = 0

    def arrays(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Array name -> (dtype, shape of one sample)."""
        index = _DTYPES["uint16"] if self.classes <= 65_536 else _DTYPES["int32"]
        if self.kind == "hard":
            return {"classes": (index, ())}
        if self.kind == "logits":
            return {"logits": (_DTYPES["float32"], (self.classes,))}
        values, rest = (_DTYPES["float32"], (self.k,)), (_DTYPES["float32"], ())
        return {"values": values, "classes": (index, (self.k,)), "rest": rest}

    def epoch_bytes(self, name: str) -> int:
        """Bytes of one epoch of array `name`."""
        dtype, row = self.arrays()[name]
        return self.steps * self.batch * math.prod(row) * dtype.itemsize

    def to_dict(self) -> dict[str, Any]:
        """As stored in the manifest."""
        return dataclasses.asdict(self)


def file_name(rank: int, array: str) -> str:
    """One rank's file of one array."""
    return f"rank{rank}.{array}.bin"


def encode(logits: Tensor, layout: Layout, tau: float) -> dict[str, np.ndarray]:
    """One step's teacher logits (B, C) as the layout's arrays (on the CPU)."""
    logits = logits.detach().float().cpu()
    arrays = layout.arrays()
    if layout.kind == "hard":
        return {"classes": logits.argmax(-1).numpy().astype(arrays["classes"][0])}
    if layout.kind == "logits":
        return {"logits": logits.numpy().astype(_DTYPES["float32"])}
    values, classes = logits.topk(layout.k, dim=-1)
    rest = rest_logit(logits, classes, tau)
    return {
        "values": values.numpy().astype(_DTYPES["float32"]),
        "classes": classes.numpy().astype(arrays["classes"][0]),
        "rest": rest.numpy().astype(_DTYPES["float32"]),
    }


def rest_logit(logits: Tensor, top_classes: Tensor, tau: float) -> Tensor:
    """r with (C - k)·exp(r/τ) = Σ over the classes not in the top k of exp(z/τ): the others' mass at τ."""
    others = logits.scatter(-1, top_classes, float("-inf"))
    count = logits.shape[-1] - top_classes.shape[-1]
    rest = tau * (torch.logsumexp(others / tau, dim=-1) - math.log(count))
    return rest.clamp(min=torch.finfo(torch.float32).min)  # every other logit -inf: a finite stand-in


def decode(arrays: Mapping[str, np.ndarray], layout: Layout) -> Tensor:
    """The stored arrays of one step as the loss reads them: class indices (B,) for `hard`, logits (B, C)."""
    if layout.kind == "hard":
        return torch.from_numpy(arrays["classes"].astype(np.int64))
    if layout.kind == "logits":
        return torch.from_numpy(np.array(arrays["logits"]))
    rest = torch.from_numpy(np.array(arrays["rest"]))
    classes = torch.from_numpy(arrays["classes"].astype(np.int64))
    full = rest[:, None].expand(-1, layout.classes).clone()
    return full.scatter_(1, classes, torch.from_numpy(np.array(arrays["values"])))


def topk_kl(logits: Tensor, layout: Layout, tau: float) -> Tensor:
    """Σ over a batch of KL(ψ(z/τ) ‖ ψ(ẑ/τ)): what storing the top k (`ẑ`) loses against every logit (`z`)."""
    rebuilt = decode(encode(logits, layout, tau), layout).to(logits.device)
    full, approx = (torch.log_softmax(x.float() / tau, dim=-1) for x in (logits, rebuilt))
    return (full.exp() * (full - approx)).sum()


class LabelWriter:
    """Appends one rank's steps in order, hashing each epoch's bytes as they are written."""

    def __init__(self, folder: str | Path, rank: int, layout: Layout, tau: float) -> None:
        self.folder, self.rank, self.layout, self.tau = Path(folder), rank, layout, tau
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files = {name: open(self.folder / file_name(rank, name), "wb") for name in layout.arrays()}
        self._hashes = {name: hashlib.sha256() for name in layout.arrays()}
        self.digests: dict[str, list[str]] = {name: [] for name in layout.arrays()}
        self._written = 0

    def add(self, logits: Tensor) -> None:
        """The next step's teacher logits (B, C)."""
        if logits.shape[0] != self.layout.batch:
            raise DeitError(f"teacher labels: a step of {logits.shape[0]} samples, expected {self.layout.batch}")
        for name, array in encode(logits, self.layout, self.tau).items():
            data = np.ascontiguousarray(array).tobytes()
            self._files[name].write(data)
            self._hashes[name].update(data)
        self._written += 1
        if self._written % self.layout.steps == 0:  # an epoch is complete: close its digest
            for name, digest in self._hashes.items():
                self.digests[name].append(digest.hexdigest())
                self._hashes[name] = hashlib.sha256()

    def close(self) -> dict[str, list[str]]:
        """Flush the files; the per-epoch digests of each array."""
        for handle in self._files.values():
            handle.close()
        if self._written != self.layout.epochs * self.layout.steps:
            raise DeitError(
                f"teacher labels: rank {self.rank} wrote {self._written} steps, expected "
                f"{self.layout.epochs * self.layout.steps}"
            )
        return self.digests


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """`manifest.json`, atomically: a folder without one is an unfinished label pass."""
    path = Path(folder) / MANIFEST
    atomic_write(path, lambda tmp: Path(tmp).write_text(dumps_strict(manifest, indent=1) + "\n"))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a label folder, its structure and bounds checked (one-line `DeitError` otherwise)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DeitError(f"--teacher-labels {folder}: no such folder")
    if not path.is_file():
        raise DeitError(f"--teacher-labels {folder}: no {MANIFEST} (an unfinished `deit teacher-labels`?)")
    manifest = read_json_bounded(path, max_bytes=MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DeitError(f"{path}: not a deit teacher-labels manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DeitError(f"{path}: format version {manifest.get('format_version')!r}, this deit reads {FORMAT_VERSION}")
    for key in ("stream", "teacher", "layout", "digests"):
        if not isinstance(manifest.get(key), dict):
            raise DeitError(f"{path}: '{key}' missing or not a mapping")
    return manifest


def layout_of(manifest: dict[str, Any], where: str) -> Layout:
    """The manifest's layout, every number bounded (a manifest cannot make a reader allocate or map more)."""
    raw = manifest["layout"]
    if raw.get("kind") not in KINDS:
        raise DeitError(f"{where}: layout kind {raw.get('kind')!r}, expected one of {', '.join(KINDS)}")
    numbers = {}
    for key, low, high in (
        ("classes", 1, _MAX_CLASSES),
        ("epochs", 1, _MAX_COUNT),
        ("steps", 1, _MAX_COUNT),
        ("batch", 1, _MAX_COUNT),
        ("k", 0, _MAX_CLASSES),
    ):
        value = raw.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise DeitError(f"{where}: layout '{key}' {value!r} is not an integer in [{low}, {high}]")
        numbers[key] = value
    layout = Layout(kind=raw["kind"], **numbers)
    if layout.kind == "topk" and not 1 <= layout.k < layout.classes:
        raise DeitError(f"{where}: top-k of {layout.k} for {layout.classes} classes")
    return layout


class TeacherLabels:
    """One rank's stored teacher outputs, checked against their manifest; `outputs(epoch, step)` reads a step."""

    def __init__(self, folder: str | Path, rank: int) -> None:
        self.folder, self.rank = Path(folder), rank
        self.manifest = read_manifest(self.folder)
        where = f"--teacher-labels {self.folder}"
        self.layout = layout_of(self.manifest, where)
        digests = self.manifest["digests"].get(f"rank{rank}")
        if not isinstance(digests, dict) or set(digests) != set(self.layout.arrays()):
            raise DeitError(f"{where}: no digests for rank {rank}'s arrays")
        self._digests: dict[str, list[str]] = {}
        self._maps: dict[str, np.memmap] = {}
        for name, (dtype, row) in self.layout.arrays().items():
            listed = digests[name]
            if not isinstance(listed, list) or len(listed) != self.layout.epochs:
                raise DeitError(f"{where}: rank {rank} '{name}' needs one digest per epoch ({self.layout.epochs})")
            if not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in listed):
                raise DeitError(f"{where}: rank {rank} '{name}' has a malformed digest")
            self._digests[name] = listed
            path = self.folder / file_name(rank, name)
            expected = self.layout.epoch_bytes(name) * self.layout.epochs
            size = path.stat().st_size if path.is_file() else -1
            if size != expected:
                state = "missing" if size < 0 else f"{size:,} bytes"
                raise DeitError(
                    f"{where}: {path.name} is {state}, the manifest says {expected:,} (truncated or replaced)"
                )
            shape = (self.layout.epochs, self.layout.steps, self.layout.batch, *row)
            self._maps[name] = np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def verify(self, epochs: Iterable[int]) -> None:
        """Re-hash the bytes of `epochs` against the manifest; a changed byte is refused naming file and epoch."""
        for epoch in epochs:
            for name, digests in self._digests.items():
                data = self._maps[name][epoch]
                if hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B")).hexdigest() != digests[epoch]:
                    raise DeitError(
                        f"--teacher-labels {self.folder}: {file_name(self.rank, name)} epoch {epoch + 1} does not "
                        f"match its sha256 in the manifest (edited or damaged); compute the labels again"
                    )

    def outputs(self, epoch: int, step: int) -> Tensor:
        """The teacher's outputs for one step: class indices (B,) for `hard`, logits (B, C) otherwise."""
        return decode({name: mapped[epoch, step] for name, mapped in self._maps.items()}, self.layout)


class ReplayedTeacher(nn.Module):
    """The stand-in teacher of a replayed run: every batch comes with its outputs, so it never runs."""

    def forward(self, images: Tensor) -> Tensor:
        """Never called by a replayed run; a batch without stored outputs is a bug, said in one line."""
        raise DeitError("--teacher-labels: a training batch came without the teacher's stored outputs")
