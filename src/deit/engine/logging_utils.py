"""What a run tells people: progress bars or plain lines, `log.txt` JSON lines, TensorBoard, and `curves.png`."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from deit.io import dumps_strict


def resolve_log_format(log_format: str, *, is_main: bool, stream: Any = None) -> str:
    """`bar`, `plain` or `quiet` (every rank but 0); `auto` means bars on a terminal, plain lines otherwise."""
    if not is_main:
        return "quiet"
    if log_format != "auto":
        return log_format
    stream = sys.stderr if stream is None else stream
    return "bar" if getattr(stream, "isatty", lambda: False)() else "plain"


def format_duration(seconds: float) -> str:
    """h:mm:ss."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress of one epoch (or evaluation): steps are counted host-side, values arrive only when synced."""

    def __init__(self, *, total: int, desc: str, mode: str, steps_after: int = 0) -> None:
        self.total, self.desc, self.mode = total, desc, mode
        self.steps_after = steps_after  # training steps of the run's later epochs, for the whole-run ETA
        self.start = time.perf_counter()
        self.images = 0
        self.steps = 0
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr)

    @property
    def images_per_second(self) -> float:
        """Throughput since the start of the epoch (host clock)."""
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def step(self, images: int) -> None:
        """One more step of `images` images (cheap: no device value is read)."""
        self.steps += 1
        self.images += images
        if self._bar is not None:
            self._bar.update(1)

    def report(self, values: dict[str, float]) -> None:
        """Show freshly synced values (loss, lr ...) with throughput and ETA."""
        rate = self.images_per_second
        per_step = (time.perf_counter() - self.start) / max(self.steps, 1)
        eta = (self.total - self.steps) * per_step
        run_eta = f" run eta {format_duration(eta + self.steps_after * per_step)}" if self.steps_after else ""
        shown = {k: _format_value(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix({**shown, "img/s": f"{rate:.0f}"}, refresh=True)
        elif self.mode == "plain":
            fields = " ".join(f"{k} {v}" for k, v in shown.items())
            print(
                f"{self.desc} [{self.steps}/{self.total}] {fields} {rate:.0f} img/s eta {format_duration(eta)}"
                f"{run_eta}",
                flush=True,
            )

    def close(self) -> None:
        """Remove the bar (the epoch summary line is printed by the caller)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _format_value(value: float) -> str:
    if isinstance(value, float) and (abs(value) < 1e-2 or abs(value) >= 1e4) and value != 0 and math.isfinite(value):
        return f"{value:.3e}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def say(message: str, *, is_main: bool = True) -> None:
    """Print one line from rank 0 only."""
    if is_main:
        print(message, flush=True)


class RunLog:
    """`log.txt` (one JSON object per epoch, the official name) and TensorBoard events, written by rank 0."""

    def __init__(self, output_dir: Path | None, *, enabled: bool, purge_step: int | None = None) -> None:
        self.path = output_dir / "log.txt" if output_dir and enabled else None
        self._writer = None
        self._before_last_row: int | None = None  # log.txt's size before the last row, to take it back
        if self.path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=purge_step)

    def write_step(self, global_step: int, values: dict[str, float]) -> None:
        """Per-step scalars (`train/step_loss`, `train/step_lr`) in TensorBoard, at the global step."""
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"train/step_{key}", value, global_step)

    def write(self, stats: dict[str, Any]) -> None:
        """Append one epoch's statistics."""
        if self.path is None:
            return
        with self.path.open("a") as handle:
            self._before_last_row = handle.tell()
            handle.write(dumps_strict(stats) + "\n")
        if self._writer is not None:
            step = int(stats.get("epoch", 0))
            for key, value in stats.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self._writer.add_scalar(key.replace("train_", "train/").replace("test_", "test/"), value, step)
            self._writer.flush()

    def drop_last_row(self) -> None:
        """Take back the row `write` just appended (its epoch's checkpoint failed): truncation needs no free space,
        so it works on the full disk that made the checkpoint fail."""
        if self.path is not None and self._before_last_row is not None:
            os.truncate(self.path, self._before_last_row)
            self._before_last_row = None

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of `log.txt` (a torn last line, e.g. after kill -9, is ignored)."""
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def curve_points(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(epoch as the console counts it, value) of the `log.txt` rows that have `key`.

    With --eval-interval N the validation keys are in every N-th row only; log.txt counts epochs from 0 (the
    official format), the console's "epoch 1/2" and the plot from 1.
    """
    return [(int(row["epoch"]) + 1, row[key]) for row in rows if key in row]


def plot_curves(log_path: str | Path, out_path: str | Path, *, num_classes: int | None = None) -> Path | None:
    """`curves.png`: training/validation loss and top-1 per epoch from `log.txt` (None if nothing to plot).

    The top-1 axis spans 0-100 % with the chance level (100 / `num_classes`) drawn, so noise of a point or two
    around chance does not look like learning."""
    rows = [r for r in read_log(log_path) if "epoch" in r] if Path(log_path).is_file() else []
    if not rows:
        return None
    # A bare Figure on the Agg canvas: no pyplot state to import or close, and fixed margins instead of
    # tight_layout's extra draw (about half of the plot's cost; it is paid at the end of every run).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.9, wspace=0.25)

    def series(axis: Any, key: str, label: str) -> None:
        points = curve_points(rows, key)
        if points:
            axis.plot([epoch for epoch, _ in points], [value for _, value in points], marker="o", label=label)

    for key, label in (("train_loss", "train"), ("test_loss", "validation")):
        series(loss_ax, key, label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    if any("test_dist_acc1" in row for row in rows):
        for key, label in (("test_acc1", "fused"), ("test_cls_acc1", "class head"), ("test_dist_acc1", "dist head")):
            series(acc_ax, key, label)
    else:  # one head: "fused" and "class head" would be one line drawn twice
        series(acc_ax, "test_acc1", "top-1")
    if num_classes:
        acc_ax.axhline(100.0 / num_classes, color="grey", linestyle="--", label=f"chance (1 in {num_classes})")
    acc_ax.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1", ylim=(0, 100))
    acc_ax.legend()
    series(lr_ax, "train_lr", "lr of the epoch")
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    for axis in (loss_ax, acc_ax, lr_ax):
        axis.xaxis.get_major_locator().set_params(integer=True)
    out_path = Path(out_path)
    from deit.io import atomic_write

    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out_path
