"""Training checkpoints (docs/architecture.md layout): atomic save, disk-full safety, resume, RNG capture."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deit.engine.checkpoint_structure import check_scheduler_state, validate_checkpoint_structure
from deit.engine.optim import keep_kernel_choice
from deit.errors import DeitError
from deit.integrity import DIGEST_KEY, check_finite, tensor_digest, verify_digest
from deit.io import atomic_torch_save, load_torch_file, require_regular_file
from deit.models.checkpoint import extract_state_dict
from deit.models.download import fetch_checkpoint, is_url
from deit.models.meta import CheckpointMeta

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best_checkpoint.pth"


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step draws from (torch CPU/CUDA, numpy, python), as tensors and plain data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what `capture_rng` recorded, so the next epoch draws the same numbers."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def save_checkpoint(state: dict[str, Any], path: Path, *, previous_epoch: int | None = None) -> None:
    """Write atomically; on a full disk (or any write error) the previous file stays and the error says so."""
    try:
        atomic_torch_save(state, path)
    except (OSError, RuntimeError) as error:  # torch's zip writer reports a short write as a RuntimeError
        if isinstance(error, RuntimeError) and not _is_write_failure(error):
            raise
        kept = (
            f"the previous {path.name} (epoch {previous_epoch}) is intact"
            if previous_epoch is not None
            else f"no previous {path.name} existed"
        )
        raise DeitError(f"{_write_failure(error, path)}; {kept}") from error


def _is_write_failure(error: RuntimeError) -> bool:
    text = str(error)
    return "unexpected pos" in text or "file write failed" in text or "inline_container" in text


def _write_failure(error: BaseException, path: Path) -> str:
    """'disk full while writing NAME in DIR' when the disk is full (errno, or torch's short write with no room
    left), else the write error in one line."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = getattr(error, "errno", None) == errno.ENOSPC or (
        isinstance(error, RuntimeError) and free is not None and free < _FULL_DISK_BYTES
    )
    if full:
        return f"disk full while writing {path.name} in {path.parent}"
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
    return f"could not write {path}: {reason}"


_FULL_DISK_BYTES = 64 << 20  # a failed checkpoint write with less than this left: the disk filled up


def resolve_resume_path(resume: str, output_dir: str) -> Path | None:
    """`--resume auto` -> the run directory's checkpoint.pth if it exists; a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        if not output_dir:
            raise DeitError("--resume auto needs --output_dir (where checkpoint.pth is looked for)")
        candidate = Path(output_dir) / CHECKPOINT_NAME
        return candidate if candidate.is_file() else None
    if is_url(resume):
        return fetch_checkpoint(resume, progress=True, local_option="--resume")  # as official: a URL resumes too
    return require_regular_file(resume, flag="--resume")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict with a `model` state dict (official release files are accepted too)."""
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict):
        raise DeitError(f"{path}: not a checkpoint (expected a dict, found {type(checkpoint).__name__})")
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        checkpoint = {"model": checkpoint}  # a bare state dict
    validate_checkpoint_structure(checkpoint, path)
    # Reading a file's weights (containers, DDP prefixes, official DeiT III names) is models/checkpoint.py's job.
    checkpoint = dict(checkpoint, model=extract_state_dict(checkpoint, source=str(path)))
    verify_digest(checkpoint["model"], checkpoint.get(DIGEST_KEY), source=str(path))
    check_finite(checkpoint["model"], source=str(path))
    return checkpoint


def check_resume_matches(
    checkpoint: dict[str, Any], path: Path, *, model: str, model_kwargs: dict[str, Any], input_size: int
) -> None:
    """Refuse, before any work, a checkpoint recorded for another model, shape or input size."""
    args = checkpoint.get("args") or {}
    saved = {key: args.get(key) for key in ("model", "model_kwargs", "input_size")}  # official files: args only
    if checkpoint.get("meta"):
        meta = CheckpointMeta.from_dict(checkpoint["meta"], source=str(path))
        saved = {"model": meta.model, "model_kwargs": meta.model_kwargs, "input_size": meta.input_size}
    saved_model = saved["model"]
    if saved_model is not None and saved_model != model:
        raise DeitError(
            f"--resume {path}: it holds a '{saved_model}' checkpoint, not '{model}' "
            f"(use --finetune to start a different model from it)"
        )
    saved_kwargs = saved["model_kwargs"]
    if saved_kwargs is not None and dict(saved_kwargs) != dict(model_kwargs):
        raise DeitError(f"--resume {path}: it was trained with --model-kwargs {saved_kwargs}, not {model_kwargs}")
    saved_size = saved["input_size"]
    if saved_size is not None and int(saved_size) != input_size:
        raise DeitError(
            f"--resume {path}: it was trained at --input-size {saved_size}, not {input_size} "
            f"(use --finetune to change resolution)"
        )


# Settings a resumed run may change, but never without a word: each changes what the remaining epochs do.
_SAID_ON_RESUME = ("batch_size", "lr", "unscale_lr", "data_set", "data_path", "train_subset", "epochs", "opt")


def resume_changes(checkpoint: dict[str, Any], path: Path, settings: dict[str, Any]) -> str:
    """One line naming what `settings` (a `TrainConfig.to_dict()`) change against the run recorded in
    `checkpoint['args']`, with the scaled learning rate when batch size or lr differ; '' when nothing does."""
    from deit.engine.optim import scaled_lr

    saved = checkpoint.get("args")
    if not isinstance(saved, dict):
        return ""
    changed = [
        f"--{key.replace('_', '-')} {settings[key]} (was {saved[key]})"
        for key in _SAID_ON_RESUME
        if key in saved and key in settings and saved[key] is not None and saved[key] != settings[key]
    ]
    if not changed:
        return ""
    line = f"--resume {path}: resumed with other settings than it was trained with: {', '.join(changed)}"
    try:
        before, after = (
            scaled_lr(
                float(args["lr"]),
                int(args["batch_size"]),
                int(args.get("world_size") or 1),
                unscale=bool(args.get("unscale_lr")),
            )
            for args in (saved, settings)
        )
    except (KeyError, TypeError, ValueError):
        return line
    return line + (f"; the scaled lr is now {after:.3g} (was {before:.3g})" if before != after else "")


def prune_log(log_path: Path, last_epoch: int) -> None:
    """Drop `log.txt` lines for epochs after `last_epoch` (written by a run that died before its checkpoint)."""
    if not log_path.is_file():
        return
    import json

    kept = []
    for line in log_path.read_text(errors="replace").splitlines():  # a torn multi-byte character: dropped below
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line from a kill -9
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= last_epoch:
            kept.append(line)
    from deit.io import atomic_write

    atomic_write(log_path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))


def training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    model_ema: Any,
    epoch: int,
    args: dict[str, Any],
    meta: CheckpointMeta,
    rng: dict[str, Any],
    best_acc: float,
    global_step: int,
) -> dict[str, Any]:
    """The checkpoint dict of docs/architecture.md (plus `global_step`), tensors and plain data only."""
    state: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "args": args,
        "meta": meta.to_dict(),
        "rng": rng,
        "best_acc": best_acc,
        "global_step": global_step,
    }
    state[DIGEST_KEY] = tensor_digest(state["model"])  # verified on resume: bytes flipped on disk are caught
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if model_ema is not None:
        state["model_ema"] = model_ema.module.state_dict()
    return state


def restore_training_state(
    checkpoint: dict[str, Any],
    path: Path,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    model_ema: Any,
) -> tuple[int, float, int]:
    """Load optimizer/scheduler/scaler/EMA states; returns (next epoch, best top-1, global step)."""
    missing = [key for key in ("optimizer", "lr_scheduler", "epoch") if key not in checkpoint]
    if missing:
        raise DeitError(
            f"--resume {path}: has no {', '.join(missing)} (weights only?); use --finetune to start from its weights"
        )
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, KeyError) as error:
        raise DeitError(
            f"--resume {path}: its optimizer state does not fit (--opt or --attn-only changed?): {error}"
        ) from error
    keep_kernel_choice(optimizer)
    check_scheduler_state(checkpoint["lr_scheduler"], scheduler.state_dict(), path)
    scheduler.load_state_dict(checkpoint["lr_scheduler"])
    if scaler is not None and "scaler" in checkpoint:
        scaler.load_state_dict(checkpoint["scaler"])
    if model_ema is not None:
        if "model_ema" in checkpoint:
            model_ema.module.load_state_dict(checkpoint["model_ema"])
        else:
            import warnings

            warnings.warn(f"{path}: no EMA weights; the EMA restarts from the resumed model", stacklevel=2)
    return int(checkpoint["epoch"]) + 1, float(checkpoint.get("best_acc", 0.0)), int(checkpoint.get("global_step", 0))


def copy_checkpoint(source: Path, target: Path) -> None:
    """Atomic copy (best / kept checkpoints); a write error is a one-line `DeitError`.

    A hard link where the file system allows it: no bytes rewritten or synced again. Safe because every
    checkpoint is written by `atomic_write` (a new file renamed into place), never changed where it lies, so the
    next epoch's `checkpoint.pth` is a new file and the link keeps this one's bytes; elsewhere a byte copy.
    """
    from deit.io import atomic_write

    try:
        atomic_write(target, lambda tmp: _link_or_copy(source, Path(tmp)))
    except OSError as error:
        raise DeitError(f"{_write_failure(error, target)}; {source.name} is intact") from error


def _link_or_copy(source: Path, tmp: Path) -> None:
    import shutil

    tmp.unlink()  # atomic_write's placeholder: the link takes its name
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT file systems): the bytes, then
        shutil.copyfile(source, tmp)


def remove_stale_temporaries(output_dir: Path) -> list[Path]:
    """Delete half-written checkpoint temporaries a killed run left behind (`.checkpoint.pth.XXXX.tmp`)."""
    stale = [p for name in (CHECKPOINT_NAME, BEST_NAME) for p in output_dir.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
