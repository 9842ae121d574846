"""Progress output, log.txt reading after a torn write, curves.png, log pruning on resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from deit.engine.checkpointing import prune_log
from deit.engine.logging_utils import Progress, plot_curves, read_log, resolve_log_format


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_format_auto_follows_the_terminal_and_other_ranks_are_quiet() -> None:
    assert resolve_log_format("auto", is_main=True, stream=FakeTerminal()) == "bar"
    assert resolve_log_format("auto", is_main=True, stream=io.StringIO()) == "plain"
    assert resolve_log_format("bar", is_main=False) == "quiet"


def test_plain_progress_line_has_throughput_and_eta(capsys: pytest.CaptureFixture) -> None:
    progress = Progress(total=10, desc="epoch 3", mode="plain")
    for _ in range(4):
        progress.step(32)
    progress.report({"loss": 1.25, "lr": 2.5e-4})
    line = capsys.readouterr().out.strip()
    assert line.startswith("epoch 3 [4/10] loss 1.2500 lr 2.500e-04") and "img/s eta 0:00:0" in line
    Progress(total=10, desc="quiet", mode="quiet").report({"loss": 1.0})
    assert capsys.readouterr().out == ""


def write_log(path: Path, epochs: int, torn: bool = False) -> None:
    rows = [
        json.dumps(
            {
                "epoch": e,
                "train_loss": 2.0 - e / 10,
                "test_loss": 2.1 - e / 10,
                "test_acc1": 10.0 * e,
                "test_cls_acc1": 9.0 * e,
            }
        )
        for e in range(epochs)
    ]
    path.write_text("\n".join(rows) + "\n" + ('{"epoch": 9, "train_lo' if torn else ""))


def test_torn_last_line_is_ignored_and_prune_drops_later_epochs(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    write_log(log, 4, torn=True)
    assert [r["epoch"] for r in read_log(log)] == [0, 1, 2, 3]
    prune_log(log, 1)
    assert [r["epoch"] for r in read_log(log)] == [0, 1]


def test_curves_png(tmp_path: Path) -> None:
    write_log(tmp_path / "log.txt", 3)
    out = plot_curves(tmp_path / "log.txt", tmp_path / "curves.png")
    assert out is not None and Image.open(out).size[0] >= 500
    assert plot_curves(tmp_path / "missing.txt", tmp_path / "none.png") is None
