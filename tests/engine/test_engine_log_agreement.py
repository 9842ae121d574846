"""The run's log agrees with its checkpoint: after a kill at any point and `--resume auto`, one row per epoch."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from conftest import FAST, TINY_STUDENT, log_rows, run_cli
from deit.io import load_torch_file

train_module = importlib.import_module("deit.engine.run")
THREE_EPOCHS = ["train", *TINY_STUDENT, *FAST, "--epochs", "3", "--no-model-ema"]


class Killed(BaseException):
    """Stands for kill -9: nothing in the run catches it, so the files stay as the kill would leave them."""


def kill_at_save(monkeypatch: pytest.MonkeyPatch, epoch: int, *, after: bool) -> None:
    """Stop the run just before (or just after) `checkpoint.pth` of 0-based `epoch` is written."""
    real = train_module.save_checkpoint

    def save(state, path, **kwargs):
        if state["epoch"] == epoch and not after:
            raise Killed
        real(state, path, **kwargs)
        if state["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save)


@pytest.mark.parametrize(
    ("epoch", "after", "checkpointed"), [(0, False, None), (0, True, 0), (1, False, 0), (1, True, 1)]
)
def test_a_kill_around_the_checkpoint_then_resume_logs_each_epoch_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    epoch: int,
    after: bool,
    checkpointed: int | None,
) -> None:
    kill_at_save(monkeypatch, epoch, after=after)
    with pytest.raises(Killed):
        run_cli([*THREE_EPOCHS, "--output_dir", tmp_path], capsys)
    monkeypatch.undo()
    saved = load_torch_file(tmp_path / "checkpoint.pth")["epoch"] if checkpointed is not None else None
    assert saved == checkpointed
    # Whatever the kill left, the rows cover at least every checkpointed epoch (the row is written first).
    assert [row["epoch"] for row in log_rows(tmp_path)][: epoch + 1] == list(range(epoch + 1))

    code, out, _ = run_cli([*THREE_EPOCHS, "--output_dir", tmp_path, "--resume", "auto"], capsys)
    assert code == 0, out
    assert [row["epoch"] for row in log_rows(tmp_path)] == [0, 1, 2]
    assert load_torch_file(tmp_path / "checkpoint.pth")["epoch"] == 2
