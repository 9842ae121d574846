"""What a checkpoint file records about its training: `deit train`'s arguments, epoch, best top-1, last log row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint was trained, as far as the file (and the `log.txt` beside it) tells."""

    args: dict[str, Any] = field(default_factory=dict)  # `deit train`'s (or the official main.py's); {} if none
    has_preprocessing: bool = False  # deit meta, or a HF/export directory: the file brings its own preprocessing
    epoch: int | None = None
    best_acc: float | None = None
    last_log: dict[str, Any] = field(default_factory=dict)  # the last complete row of log.txt beside the file
    lr_used: float | None = None  # the peak lr the optimizer ran with (after batch scaling), from its state

    def data(self, data_set: str | None, data_path: str | None) -> tuple[str | None, str | None]:
        """The data set and path given, else those the run recorded (`deit eval` and `deit analyze` alike)."""
        return data_set or self.args.get("data_set") or None, data_path or self.args.get("data_path") or None


def training_record(checkpoint: str | Path) -> TrainingRecord:
    """The record of `checkpoint` (a file or an HF/export directory), read safely; empty where it has none."""
    from deit.engine.logging_utils import read_log
    from deit.models.checkpoint import read_file_with_meta

    path = Path(checkpoint)
    if path.is_dir():
        return TrainingRecord(has_preprocessing=True)
    payload, meta = read_file_with_meta(path)
    args = payload.get("args") if isinstance(payload, dict) else None
    if not isinstance(args, dict):
        return TrainingRecord(has_preprocessing=meta is not None)
    log = path.parent / "log.txt"
    rows = read_log(log) if log.is_file() else []
    return TrainingRecord(
        args,
        meta is not None,
        epoch=payload.get("epoch"),
        best_acc=payload.get("best_acc"),
        last_log=rows[-1] if rows else {},
        lr_used=_peak_lr(payload.get("optimizer")),
    )


def _peak_lr(optimizer_state: Any) -> float | None:
    """The lr the run actually used (after batch scaling): timm's schedulers keep it as `initial_lr`."""
    if not isinstance(optimizer_state, dict) or not isinstance(optimizer_state.get("param_groups"), list):
        return None
    rates = [g.get("initial_lr", g.get("lr")) for g in optimizer_state["param_groups"] if isinstance(g, dict)]
    rates = [float(r) for r in rates if isinstance(r, (int, float)) and not isinstance(r, bool)]
    return max(rates) if rates else None


__all__ = ["TrainingRecord", "training_record"]
