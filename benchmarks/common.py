"""Shared pieces of the side-by-side benchmarks: the same model in deit and timm, interleaved timing, reports."""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deit.cpu_info import describe_cpu
from deit.inference.bench import time_steps


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what the numbers were taken: machine, load, versions, date, exact command."""
    import timm

    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu": describe_cpu(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def same_weights_pair(name: str, device: torch.device, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """`(timm model, deit model)` of `name` with identical weights: timm's random init loaded into ours."""
    import timm

    from deit.models.factory import build_model

    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, **kwargs)
    ours = build_model(
        name, num_classes=kwargs.get("num_classes", 1000), **{k: v for k, v in kwargs.items() if k != "num_classes"}
    )
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.to(device), ours.to(device)


def interleaved(
    paths: dict[str, Callable[[], Any]], *, rounds: int, steps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Per-step milliseconds of each path, timed in alternation (A, B, A, B, ...) so load drift hits all alike."""
    for step in paths.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, step in paths.items():
            times[name] += time_steps(step, steps=steps, warmup=1, device=device)
    return times


def free_memory() -> None:
    """Drop compiled graphs and cached GPU blocks between rows, so one row cannot slow the next."""
    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Deadline:
    """A wall-clock budget: rows that would not fit are skipped rather than killed half-way."""

    def __init__(self, seconds: float | None, *, row_estimate_s: float = 0.0) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds
        self.row_estimate_s = row_estimate_s

    def left(self) -> float:
        """Seconds left (infinite without a budget)."""
        return float("inf") if self.end is None else self.end - time.monotonic()

    def fits_another_row(self) -> bool:
        """Whether a row of the estimated length still fits."""
        return self.left() >= self.row_estimate_s


def previous_rows(out_dir: str | None, stem: str, append: bool) -> list[dict[str, Any]]:
    """Rows already in `<out_dir>/<stem>.json` when appending (a second pass of the same script)."""
    path = Path(out_dir or ".") / f"{stem}.json"
    if not (append and out_dir and path.exists()):
        return []
    return list(json.loads(path.read_text()).get("rows", []))


def guarded(row: dict[str, Any], work: Callable[[], None]) -> None:
    """Run one row's work; an exception is recorded in the row (and printed), never fatal to the script."""
    try:
        work()
    except Exception as error:  # noqa: BLE001 - a benchmark row must not take the others down with it
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        traceback.print_exc(limit=3)
    finally:
        free_memory()


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float | None, digits: int = 1) -> str:
    """Thousands-separated, or '—' when missing."""
    return "—" if value is None else f"{value:,.{digits}f}"


def write_report(out_dir: str | None, stem: str, payload: dict[str, Any], markdown: str, *, echo: bool = True) -> None:
    """Print the Markdown (with `echo`); with `out_dir`, also write `<stem>.json` and `<stem>.md` there."""
    if echo:
        print(markdown, flush=True)
    if out_dir:
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str))
        (path / f"{stem}.md").write_text(markdown + "\n")


def environment_lines(env: dict[str, Any]) -> str:
    """The environment as Markdown bullet points, for the top of a report."""
    keys = [
        "date_utc",
        "gpu",
        "cpu",
        "cpu_count",
        "torch_threads",
        "load_average_1_5_15",
        "load_average_1_5_15_at_end",
        "torch",
        "timm",
        "onnxruntime",
        "cuda",
        "cudnn",
        "python",
        "command",
    ]
    return "\n".join(f"- {key}: `{env[key]}`" for key in keys if key in env)
