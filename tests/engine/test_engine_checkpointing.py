"""Best / kept checkpoint copies: a hard link where possible, and either way the saved epoch's bytes stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deit.engine.checkpointing import copy_checkpoint, read_checkpoint, save_checkpoint
from deit.integrity import DIGEST_KEY, tensor_digest


def _save(path: Path, value: float, epoch: int) -> None:
    model = {"w": torch.full((64,), value)}
    save_checkpoint({"model": model, "epoch": epoch, DIGEST_KEY: tensor_digest(model)}, path)


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-links-on-this-file-system"])
def test_the_best_copy_keeps_its_epoch_when_the_latest_is_rewritten(
    tmp_path: Path, links: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not links:

        def refuse(*_: object) -> None:
            raise OSError("hard links not supported")

        monkeypatch.setattr(os, "link", refuse)
    latest, best = tmp_path / "checkpoint.pth", tmp_path / "best_checkpoint.pth"
    _save(latest, 1.0, epoch=0)
    copy_checkpoint(latest, best)
    assert (latest.stat().st_ino == best.stat().st_ino) is links
    _save(latest, 2.0, epoch=1)  # the next epoch, written over checkpoint.pth
    kept, newest = read_checkpoint(best), read_checkpoint(latest)  # both verify their content hash
    assert kept["epoch"] == 0 and torch.equal(kept["model"]["w"], torch.full((64,), 1.0))
    assert newest["epoch"] == 1 and torch.equal(newest["model"]["w"], torch.full((64,), 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_checkpoint.pth", "checkpoint.pth"]  # no temporaries


def test_resume_says_what_changed_and_the_new_scaled_lr(tmp_path: Path) -> None:
    from deit.engine.checkpointing import resume_changes

    saved = {"args": {"batch_size": 16, "lr": 5e-4, "world_size": 1, "data_set": "DIGITS", "epochs": 10}}
    same = dict(saved["args"], seed=3)  # a setting not listed (the seed) is not news
    assert resume_changes(saved, tmp_path / "c.pth", same) == ""
    line = resume_changes(saved, tmp_path / "c.pth", dict(same, batch_size=32, data_set="CIFAR10"))
    assert "c.pth: resumed with other settings" in line and "--batch-size 32 (was 16)" in line
    assert "--data-set CIFAR10 (was DIGITS)" in line and "the scaled lr is now 3.13e-05 (was 1.56e-05)" in line
    assert "\n" not in line and resume_changes({"args": None}, tmp_path / "c.pth", same) == ""
