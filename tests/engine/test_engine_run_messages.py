"""What a run and its help say, as a new user reads them: resume lines, the summary of a resumed run, one accuracy
column for a one-head model, each default shown once, and no advice to take a recipe the run already has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import FAST, TINY_KWARGS, run_cli
from deit.cli import build_parser
from deit.engine.config import config_from_args
from deit.engine.recipes import small_run_warnings
from deit.engine.run import format_metrics
from deit.engine.run_report import closing_summary

PLAIN = ["--model", "deit_tiny_patch16_224", "--model-kwargs", TINY_KWARGS, "--input-size", "32"]


def test_a_resumed_run_says_where_it_resumed_and_counts_the_whole_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = ["train", *PLAIN, *FAST, "--output_dir", tmp_path]
    assert run_cli([*run, "--epochs", "1"], capsys)[0] == 0
    code, out, err = run_cli([*run, "--epochs", "3", "--resume", "auto"], capsys)
    assert code == 0, err
    assert f"resumed from epoch 1 of 3 ({tmp_path / 'checkpoint.pth'}); continuing at epoch 2" in out
    assert out.splitlines()[-1].startswith("done: 3/3 epochs (2 in 0:00:")
    assert "since resuming after epoch 1)" in out.splitlines()[-1]


def test_the_summary_of_a_fresh_run_is_unchanged() -> None:
    line = closing_summary(50.0, {"acc1": 40.0}, None, epochs_run=3, seconds=5.0)
    assert line.startswith("done: 3 epoch(s) in 0:00:05 | best top-1 50.00 | last top-1 40.00")


def test_a_one_head_model_shows_one_accuracy_column() -> None:
    one_head = {"acc1": 61.5, "acc5": 90.0, "cls_acc1": 61.5, "cls_acc5": 90.0, "loss": 1.25}
    assert format_metrics(one_head) == "top-1 61.50 top-5 90.00 | loss 1.2500"
    two_heads = {**one_head, "cls_acc1": 60.0, "dist_acc1": 58.0, "dist_acc5": 88.0}
    assert format_metrics(two_heads).startswith("fused top-1 61.50 top-5 90.00 | class head 60.00/90.00 | dist head")


def test_every_default_is_shown_once_in_the_help() -> None:
    parser = build_parser("train")._subparsers._group_actions[0].choices["train"]
    helps = [action.help for action in parser._actions if action.help]
    assert [h for h in helps if h.count("(default:") > 1] == []
    assert any(h.endswith("the head keeps the full lr (default: off)") for h in helps)  # --layer-decay


def test_deit_help_lists_every_export_format(capsys: pytest.CaptureFixture) -> None:
    build_parser().print_help()
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "export a checkpoint to ONNX, TorchScript, safetensors, a Hugging Face or a timm folder" in text


def test_the_warmup_warning_suggests_a_recipe_only_to_a_run_without_one() -> None:
    def warnings_for(*flags: str) -> list[str]:
        return small_run_warnings(config_from_args(build_parser("train").parse_args(["train", *flags])), world_size=1)

    (with_recipe,) = warnings_for("--recipe", "small-data", "--epochs", "2")
    assert with_recipe.startswith("--warmup-epochs 2 ≥ --epochs 2") and "--recipe" not in with_recipe
    (without,) = [w for w in warnings_for("--epochs", "3", "--unscale-lr") if w.startswith("--warmup-epochs")]
    assert "(or try --recipe finetune / small-data)" in without
