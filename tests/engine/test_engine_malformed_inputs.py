"""Malformed checkpoints, flags and settings files: one line naming the file/key or flag, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import FAST, TINY_STUDENT, run_cli

TRAIN = ["train", *TINY_STUDENT, *FAST, "--epochs", "2", "--no-model-ema"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run of the tiny student (its checkpoint.pth is the template of the malformed ones)."""
    from deit.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main([str(a) for a in [*TRAIN, "--epochs", "1", "--output_dir", out]]) == 0
    return out


def _one_line_exit_2(argv: list, capsys: pytest.CaptureFixture, *needles: str) -> str:
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("deit: error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", [1, 2]),
        ("meta", ["x"]),
        ("rng", {"torch": "not a tensor"}),
        ("lr_scheduler", [3]),
        ("epoch", -5),
        ("optimizer", {"state": 1}),
    ],
)
def test_a_malformed_checkpoint_entry_is_named(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, key: str, value: object
) -> None:
    checkpoint = torch.load(finished_run / "checkpoint.pth", weights_only=True)
    checkpoint[key] = value
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    _one_line_exit_2([*TRAIN, "--resume", path, "--output_dir", tmp_path / "out"], capsys, str(path), f"'{key}'")


def test_a_scheduler_entry_of_the_wrong_type_is_named(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = torch.load(finished_run / "checkpoint.pth", weights_only=True)
    checkpoint["lr_scheduler"]["t_initial"] = "soon"
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    _one_line_exit_2(
        [*TRAIN, "--resume", path, "--output_dir", tmp_path / "out"], capsys, "'lr_scheduler'", "t_initial"
    )


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--model-kwargs", '{"depth": 1, "patch_size": [4, 4], "embed_dim": 32, "num_heads": 2}'], "'patch_size'"),
        (["--model-kwargs", '{"depth": 0, "patch_size": 8, "embed_dim": 32, "num_heads": 2}'], "'depth'"),
        (
            ["--model-kwargs", '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 0}'],
            "'mlp_ratio'",
        ),
        (["--model-kwargs", '{"pretrained": true}'], "'pretrained'"),
        (["--batch-size", "1", "--mixup-mode", "elem"], "--batch-size 1"),
        (["--drop-path", "1.0"], "--drop-path 1.0"),
    ],
)
def test_bad_flags_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list, needle: str) -> None:
    _one_line_exit_2([*TRAIN, *flags, "--output_dir", tmp_path], capsys, needle)
    assert not any(tmp_path.iterdir())  # nothing written before the settings are valid


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdef", "bcdefg")]
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(lines) + "\n")
    assert config.stat().st_size < 300  # ~4.8 million strings once expanded
    _one_line_exit_2(["train", "--config", config], capsys, "aliases", str(config))


def test_nan_outputs_fail_eval_and_metrics_json_stays_strict(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deit.engine.loop as loop

    original = loop._logits_from

    def nan_logits(net: torch.nn.Module, images: torch.Tensor) -> tuple:
        return tuple(None if t is None else t * float("nan") for t in original(net, images))

    monkeypatch.setattr(loop, "_logits_from", nan_logits)  # finite weights, overflowing outputs
    _one_line_exit_2(
        ["eval", "--checkpoint", finished_run / "checkpoint.pth", "--num_workers", "0", "--output", tmp_path],
        capsys,
        "loss is nan",
    )

    def refuse(constant: str) -> None:
        raise AssertionError(f"invalid JSON constant {constant}")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["loss"] is None
