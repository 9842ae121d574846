"""Checkpoints cross both ways with the official code: timm's DeiT classes, optimizer factory and scheduler
(what the official main.py uses) stand in for it; plus weights-only resume and old-order optimizer state."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from timm.models.deit import VisionTransformerDistilled
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from conftest import FAST, TINY_STUDENT, log_rows, run_cli
from deit.engine.checkpoint_structure import ELEMENTWISE_STATES, check_state_shapes
from deit.engine.optim import build_optimizer
from deit.errors import DeitError
from deit.io import load_torch_file
from deit.models import create_model

# The tiny student of conftest (TINY_STUDENT), spelled as constructor arguments.
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=10)


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One step on random images, both heads on the labels (the official loss's shape without a teacher)."""
    model.train()
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    cls_logits, dist_logits = model(images)
    (F.cross_entropy(cls_logits, labels) + F.cross_entropy(dist_logits, labels)).backward()
    optimizer.step()
    optimizer.zero_grad()


def _official_run(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    """A distilled DeiT after one step of official main.py's optimizer and scheduler."""
    torch.manual_seed(seed)
    model = VisionTransformerDistilled(**TINY)
    model.set_distilled_training(True)  # the official model returns (cls, dist) in training mode
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=2, warmup_epochs=0)
    _train_step(model, optimizer)
    scheduler.step(0)
    return model, optimizer, scheduler


def _official_checkpoint(path: Path) -> dict:
    """What official main.py saves after epoch 0, `args` an argparse.Namespace; written to `path`."""
    model, optimizer, scheduler = _official_run()
    args = argparse.Namespace(
        model="deit_tiny_distilled_patch16_224",
        input_size=32,
        batch_size=16,
        lr=1e-3,
        data_set="IMNET",
        data_path="/datasets01/imagenet_full_size/061417/",
        distillation_type="none",
        opt_betas=None,
        output_dir="out",
        epochs=2,
    )
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": 0,
        "model_ema": model.state_dict(),
        "scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
        "args": args,
    }
    torch.save(checkpoint, path)
    return checkpoint


def _assert_states_shaped_like_parameters(optimizer: torch.optim.Optimizer) -> None:
    checked = 0
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state[parameter].items():
                if key in ELEMENTWISE_STATES:
                    assert value.shape == parameter.shape, (key, value.shape, parameter.shape)
                    checked += 1
    assert checked == 2 * sum(len(group["params"]) for group in optimizer.param_groups)  # exp_avg, exp_avg_sq


def test_official_optimizer_state_lands_on_the_same_named_parameters() -> None:
    official_model, official_optimizer, _ = _official_run()
    ours = create_model("deit_tiny_distilled_patch16_224", **TINY)
    ours.load_state_dict(official_model.state_dict(), strict=True)
    optimizer = build_optimizer(
        ours, opt="adamw", lr=1e-3, weight_decay=0.05, eps=1e-8, betas=None, momentum=0.9, device=torch.device("cpu")
    )
    optimizer.load_state_dict(official_optimizer.state_dict())
    check_state_shapes(optimizer, ours, "official.pth")
    # Position-matched state is right only if every name gets its own moments, same-shaped ones included.
    theirs = dict(official_model.named_parameters())
    for name, parameter in ours.named_parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                optimizer.state[parameter][key],
                official_optimizer.state[theirs[name]][key],
                rtol=0,
                atol=0,
                msg=f"{key} of {name}",
            )


@pytest.mark.slow
def test_official_checkpoint_resumes_for_another_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    official = _official_checkpoint(tmp_path / "official.pth")
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "2",
            "--resume",
            tmp_path / "official.pth",
            "--output_dir",
            run_dir,
        ],
        capsys,
    )
    assert code == 0, err
    assert "epoch 2/2" in out and "epoch 1/2" not in out
    assert [row["epoch"] for row in log_rows(run_dir)] == [1]
    resumed = load_torch_file(run_dir / "checkpoint.pth")
    assert resumed["epoch"] == 1
    # Three small steps from the official weights: close to them, yet trained.
    change = (resumed["model"]["blocks.0.mlp.fc1.weight"] - official["model"]["blocks.0.mlp.fc1.weight"]).abs()
    assert 0 < change.max() < 5e-3
    model = create_model("deit_tiny_distilled_patch16_224", **TINY)
    optimizer = build_optimizer(
        model, opt="adamw", lr=1e-3, weight_decay=0.05, eps=1e-8, betas=None, momentum=0.9, device=torch.device("cpu")
    )
    optimizer.load_state_dict(resumed["optimizer"])
    _assert_states_shaped_like_parameters(optimizer)


@pytest.mark.slow
def test_our_checkpoint_continues_in_the_official_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 'labels' trains both heads, so every parameter has optimizer state to carry over.
    code, _, err = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "2", "--distillation-type", "labels", "--output_dir", tmp_path],
        capsys,
    )
    assert code == 0, err
    checkpoint = load_torch_file(tmp_path / "checkpoint.pth")
    model = VisionTransformerDistilled(**TINY)
    model.set_distilled_training(True)
    model.load_state_dict(checkpoint["model"], strict=True)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=2, warmup_epochs=0)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["lr_scheduler"])
    _assert_states_shaped_like_parameters(optimizer)
    _train_step(model, optimizer)  # the step that crashed while the two orders differed
    _assert_states_shaped_like_parameters(optimizer)


def test_old_order_optimizer_state_is_refused_before_any_step(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "source"
    assert run_cli(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", source], capsys)[0] == 0
    checkpoint = load_torch_file(source / "checkpoint.pth")
    # Before the official order, a distilled model registered dist_token before pos_embed: the saved state of
    # those two sat at each other's positions.
    model = create_model("deit_tiny_distilled_patch16_224", **TINY)
    optimizer = build_optimizer(
        model, opt="adamw", lr=1e-3, weight_decay=0.05, eps=1e-8, betas=None, momentum=0.9, device=torch.device("cpu")
    )
    position = {id(p): i for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"])}
    names = dict(model.named_parameters())
    pos_index, dist_index = position[id(names["pos_embed"])], position[id(names["dist_token"])]
    state = checkpoint["optimizer"]["state"]
    state[pos_index], state[dist_index] = state[dist_index], state[pos_index]
    torch.save(checkpoint, tmp_path / "old_order.pth")

    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "2",
            "--resume",
            tmp_path / "old_order.pth",
            "--output_dir",
            run_dir,
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "old_order.pth" in err and "pos_embed" in err and "(1, 1, 32)" in err and "(1, 18, 32)" in err
    assert "epoch 2/2" not in out and not (run_dir / "checkpoint.pth").exists()
    with pytest.raises(DeitError, match="pos_embed"):
        optimizer.load_state_dict(checkpoint["optimizer"])
        check_state_shapes(optimizer, model, "old_order.pth")


@pytest.mark.slow
def test_weights_only_resume_starts_at_epoch_one_from_those_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "source"
    assert run_cli(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", source], capsys)[0] == 0
    weights = load_torch_file(source / "checkpoint.pth")["model"]
    torch.save({"model": weights}, tmp_path / "released.pth")  # the layout of the official release files
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--resume",
            tmp_path / "released.pth",
            "--output_dir",
            run_dir,
        ],
        capsys,
    )
    assert code == 0, err
    notes = [line for line in out.splitlines() if "weights only" in line]
    assert len(notes) == 1 and "released.pth" in notes[0] and "starts at epoch 1" in notes[0]
    assert [row["epoch"] for row in log_rows(run_dir)] == [0]
    trained = load_torch_file(run_dir / "checkpoint.pth")["model"]
    change = (trained["blocks.0.mlp.fc1.weight"] - weights["blocks.0.mlp.fc1.weight"]).abs().max()
    assert 0 < change < 5e-3


def test_official_checkpoint_is_evaluated_by_deit_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _official_checkpoint(tmp_path / "official.pth")
    code, out, err = run_cli(
        [
            "eval",
            "--checkpoint",
            tmp_path / "official.pth",
            "--data-set",
            "DIGITS",
            "--num_workers",
            "0",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0, err
    assert "official.pth on DIGITS (360 images)" in out and "dist head" in out


def test_deit_eval_ema_evaluates_the_official_model_ema(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = _official_checkpoint(tmp_path / "official.pth")
    ema = dict(checkpoint["model_ema"])
    for head in ("head", "head_dist"):  # an EMA that always says class 3: unmistakable when it is evaluated
        ema[f"{head}.weight"] = torch.zeros_like(ema[f"{head}.weight"])
        ema[f"{head}.bias"] = F.one_hot(torch.tensor(3), 10).float()
    torch.save({**checkpoint, "model_ema": ema}, tmp_path / "official.pth")
    flags = ["--data-set", "DIGITS", "--num_workers", "0", "--device", "cpu", "--worst", "0"]
    code, out, err = run_cli(
        ["eval", "--checkpoint", tmp_path / "official.pth", *flags, "--ema", "--output", tmp_path / "ema"], capsys
    )
    assert code == 0, err
    assert "official.pth (EMA weights) on DIGITS" in out
    metrics = json.loads((tmp_path / "ema" / "metrics.json").read_text())
    assert metrics["weights"] == "model_ema" and metrics["classification_report"]["3"]["recall"] == 1.0
    assert metrics["acc1"] == pytest.approx(100 * metrics["classification_report"]["3"]["support"] / 360)
    assert metrics["worst_mistakes"] == [] and not (tmp_path / "ema" / "worst_mistakes.png").exists()
    code, out, err = run_cli(
        ["eval", "--checkpoint", tmp_path / "official.pth", *flags, "--output", tmp_path / "model"], capsys
    )
    assert code == 0 and "EMA" not in out
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["classification_report"]["3"]["recall"] < 1
    del checkpoint["model_ema"]
    torch.save(checkpoint, tmp_path / "no_ema.pth")
    code, _, err = run_cli(["eval", "--checkpoint", tmp_path / "no_ema.pth", *flags, "--ema"], capsys)
    assert code == 2 and "no_ema.pth: holds no EMA weights ('model_ema'" in err and len(err.splitlines()) == 1
    code, _, err = run_cli(["eval", "--checkpoint", tmp_path / "official.pth", *flags[:-1], "-1"], capsys)
    assert code == 2 and "--worst -1: must be in [0, 100000]" in err
