"""`deit train --cosub` end to end on DIGITS: it trains, and a distilled model is refused in one line."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from conftest import FAST, TINY_KWARGS, log_rows, run_cli

PLAIN = ["--model", "deit_tiny_patch16_224", "--model-kwargs", TINY_KWARGS, "--input-size", "32"]


def test_cosub_trains_and_writes_its_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["train", *PLAIN, *FAST, "--cosub", "--epochs", "1", "--output_dir", out], capsys)
    assert code == 0, stderr
    (row,) = log_rows(out)
    assert row["train_loss"] > 0 and "test_acc1" in row


def test_cosub_with_a_distillation_head_is_one_line(capsys: pytest.CaptureFixture) -> None:
    distilled = ["--model", "deit_tiny_distilled_patch16_224", "--model-kwargs", TINY_KWARGS, "--input-size", "32"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, stderr = run_cli(["train", *distilled, *FAST, "--cosub", "--epochs", "1"], capsys)
    assert code == 2 and "--cosub trains a model with one head" in stderr and "Traceback" not in stderr
    assert not [w for w in caught if "receives no training signal" in str(w.message)]  # refused before that
