"""`--finetune` reads the checkpoint, `--recipe`, small-run warnings, layer decay, linear probe (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import FAST, TINY_STUDENT, make_image_folder, run_cli
from deit.cli import build_parser
from deit.engine.config import config_from_args, make_config
from deit.engine.optim import build_optimizer
from deit.engine.recipes import RECIPES, describe_recipe, small_run_warnings
from deit.export.model_card import model_card
from deit.io import load_torch_file
from deit.models.checkpoint import read_trained_weights
from deit.models.factory import build_model


def parse(argv: list[str]):
    return config_from_args(build_parser("train").parse_args(["train", *argv]))


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny distilled DeiT 'pretrained' on DIGITS at 32 px (10 classes)."""
    from deit.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrained")
    assert main(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", str(out)]) == 0
    return out / "checkpoint.pth"


def test_finetune_without_model_builds_the_checkpoint_and_says_what_it_adapted(
    tmp_path: Path, digits_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = make_image_folder(tmp_path / "folder", classes=3)
    out = tmp_path / "ft"
    code, stdout, err = run_cli(
        [
            "train",
            "--finetune",
            digits_checkpoint,
            "--data-path",
            folder,
            "--input-size",
            "64",
            "--output_dir",
            out,
            "--recipe",
            "finetune",
            "--epochs",
            "1",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    lines = stdout.splitlines()
    head = "\n".join(lines[:6])
    assert "weights loaded into deit_tiny_distilled_patch16_224" in head and "at 32 px, 10 classes" in head
    assert "head, head_dist re-initialised: 10 → 3 classes" in head
    assert "pos_embed resampled 4×4 → 8×8 patch grid" in head
    saved = load_torch_file(out / "checkpoint.pth")
    assert saved["meta"]["model_kwargs"] == json.loads(TINY_STUDENT[3]) and saved["meta"]["input_size"] == 64
    assert saved["meta"]["finetuned_from"]["classes_before"] == 10
    assert saved["meta"]["finetuned_from"]["pos_embed_grid"] == [4, 8]
    text = (out / "config.yaml").read_text()
    assert text.startswith(f"# --finetune {digits_checkpoint}") and "10 → 3 classes" in text
    reloaded = parse(["--config", str(out / "config.yaml")])  # the comments do not stop a reload
    assert reloaded.model == "deit_tiny_distilled_patch16_224" and reloaded.input_size == 64
    card = model_card(out / "checkpoint.pth", read_trained_weights(out / "checkpoint.pth")[2], fmt="timm")
    assert f"- fine-tuned from: `{digits_checkpoint}` (a deit_tiny_distilled_patch16_224" in card
    assert "- recipe: --recipe finetune; epochs=1" in card


def test_finetune_takes_the_input_size_from_the_checkpoint_unless_given(digits_checkpoint: Path) -> None:
    assert parse(["--finetune", str(digits_checkpoint)]).input_size == 32
    assert parse(["--finetune", str(digits_checkpoint), "--input-size", "48"]).input_size == 48
    assert make_config(finetune=str(digits_checkpoint)).model == "deit_tiny_distilled_patch16_224"


def test_a_model_flag_that_does_not_fit_the_checkpoint_names_both(
    tmp_path: Path, digits_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(
        [
            "train",
            "--finetune",
            digits_checkpoint,
            "--model",
            "deit_tiny_patch16_224",
            "--model-kwargs",
            TINY_STUDENT[3],
            "--input-size",
            "32",
            "--epochs",
            "1",
            *FAST,
            "--output_dir",
            tmp_path / "bad",
        ],
        capsys,
    )
    assert code == 2
    message = err.strip().splitlines()
    assert len(message) == 1 and "Traceback" not in err
    assert "--model deit_tiny_patch16_224" in message[0] and "a deit_tiny_distilled_patch16_224" in message[0]


def test_a_model_that_fits_keeps_the_heads_when_the_classes_agree(
    tmp_path: Path, digits_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    code, stdout, _ = run_cli(["train", "--finetune", digits_checkpoint, "--epochs", "1", *FAST], capsys)
    assert code == 0
    assert "heads kept (10 classes" in stdout and "pos_embed resampled" not in stdout


def test_a_recipe_sets_its_flags_and_each_flag_still_wins(tmp_path: Path) -> None:
    config = parse(["--recipe", "finetune"])
    for name, value in RECIPES["finetune"].items():
        assert getattr(config, name) == value, name
    assert config.unscale_lr and config.aa == "none" and config.mixup == 0 and not config.repeated_aug
    overridden = parse(["--recipe", "finetune", "--lr", "3e-4", "--mixup", "0.2"])
    assert overridden.lr == 3e-4 and overridden.mixup == 0.2 and overridden.cutmix == 0.0
    line = describe_recipe(overridden)
    assert "--lr 0.0003 (yours; recipe 0.0001)" in line and "--cutmix 0," in line
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("recipe: small-data\nlr: 0.002\n")
    from_yaml = parse(["--config", str(yaml_file)])
    assert from_yaml.lr == 0.002 and from_yaml.warmup_epochs == RECIPES["small-data"]["warmup_epochs"]
    assert parse([]).recipe == "" and parse([]).mixup == 0.8  # the defaults stay the paper's


def test_an_unknown_recipe_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["train", "--recipe", "finetun", *FAST], capsys)
    assert code == 2 and "--recipe finetun: unknown recipe; choose one of finetune, small-data" in err


def test_small_runs_are_warned_about_warmup_and_a_negligible_lr() -> None:
    problems = small_run_warnings(parse(["--epochs", "2", "--batch-size", "16", "--lr", "5e-6"]), world_size=1)
    assert len(problems) == 2
    assert problems[0].startswith("--warmup-epochs 5 ≥ --epochs 2")
    assert "16/512 = 1.56e-07" in problems[1] and "--unscale-lr" in problems[1]
    assert small_run_warnings(parse(["--epochs", "2", "--recipe", "finetune", "--lr", "5e-6"]), world_size=1) == []
    assert small_run_warnings(parse(["--epochs", "10", "--batch-size", "512"]), world_size=1) == []


def test_layer_decay_gives_deeper_blocks_a_larger_lr_and_the_head_the_full_one() -> None:
    model = build_model(
        "deit_tiny_patch16_224", num_classes=3, img_size=32, depth=3, patch_size=8, embed_dim=32, num_heads=2
    )
    optimizer = build_optimizer(
        model,
        opt="adamw",
        lr=1e-3,
        weight_decay=0.05,
        eps=1e-8,
        betas=None,
        momentum=0.9,
        device=torch.device("cpu"),
        layer_decay=0.5,
    )
    scale_of = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert scale_of[id(named["head.weight"])] == 1.0
    assert scale_of[id(named["blocks.2.attn.qkv.weight"])] == 0.5
    assert scale_of[id(named["blocks.0.attn.qkv.weight"])] == 0.125
    assert scale_of[id(named["patch_embed.proj.weight"])] == scale_of[id(named["cls_token"])] == 0.0625
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay_of[id(named["pos_embed"])] == 0.0 and decay_of[id(named["blocks.0.mlp.fc1.weight"])] == 0.05


def test_layer_decay_reaches_the_optimizer_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--layer-decay", "0.5", "--output_dir", tmp_path], capsys
    )
    assert code == 0
    groups = load_torch_file(tmp_path / "checkpoint.pth")["optimizer"]["param_groups"]
    assert sorted({group["lr_scale"] for group in groups}) == [0.25, 0.5, 1.0]  # stem, block 0, head
    code, _, err = run_cli(["train", *TINY_STUDENT, *FAST, "--layer-decay", "1.5"], capsys)
    assert code == 2 and "--layer-decay 1.5: must be in (0, 1]" in err


def test_linear_probe_trains_the_heads_only(
    tmp_path: Path, digits_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    # `labels`: both heads learn, so both must move while everything else stays.
    code, _, _ = run_cli(
        [
            "train",
            "--finetune",
            digits_checkpoint,
            *FAST,
            "--epochs",
            "1",
            "--linear-probe",
            "--distillation-type",
            "labels",
            "--no-model-ema",
            "--output_dir",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0
    before = load_torch_file(digits_checkpoint)["model"]
    after = load_torch_file(tmp_path / "checkpoint.pth")["model"]
    for key in ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "pos_embed", "norm.weight"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["head_dist.weight"], after["head_dist.weight"])


def test_config_yaml_records_the_recipe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, stdout, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--recipe", "small-data", "--output_dir", tmp_path], capsys
    )
    assert code == 0
    assert "--recipe small-data: --aa none" in stdout.splitlines()[1]
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["recipe"] == "small-data" and saved["mixup"] == 0.0 and saved["unscale_lr"] is True


def test_grad_accumulation_equals_one_step_on_the_larger_batch() -> None:
    from deit.engine.step import TrainStep
    from deit.precision import resolve_precision

    torch.manual_seed(0)
    images, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))
    criterion = lambda inputs, outputs, labels: torch.nn.functional.cross_entropy(outputs, labels)  # noqa: E731
    precision = resolve_precision("none", torch.device("cpu"))

    def trained(accum: int, batches: int) -> torch.nn.Module:
        torch.manual_seed(1)
        model = torch.nn.Linear(6, 3)
        step = TrainStep(
            model, criterion, torch.optim.SGD(model.parameters(), lr=0.5), precision=precision, accum_steps=accum
        )
        size = 8 // max(batches, accum)
        for chunk in range(batches):
            step(images[chunk * size : (chunk + 1) * size], targets[chunk * size : (chunk + 1) * size])
        return model

    whole, accumulated = trained(1, 1), trained(2, 2)
    assert torch.allclose(whole.weight, accumulated.weight, atol=1e-6)
    first_half_only = trained(2, 1)  # half of the cycle: no optimizer step yet
    assert torch.equal(first_half_only.weight, trained(1, 0).weight)
    assert not torch.allclose(whole.weight, trained(1, 0).weight)


def test_grad_accumulation_scales_the_lr_with_the_larger_batch() -> None:
    assert small_run_warnings(parse(["--epochs", "10", "--batch-size", "4", "--lr", "1e-3"]), world_size=1)
    config = parse(["--epochs", "10", "--batch-size", "4", "--grad-accum-steps", "8", "--lr", "1e-3"])
    assert config.grad_accum_steps == 8 and small_run_warnings(config, world_size=1) == []


def test_class_balanced_sampling_evens_out_an_imbalanced_split() -> None:
    from collections import Counter

    from deit.data.balanced_sampler import ClassBalancedSampler

    labels = [0] * 90 + [1] * 9 + [2] * 1
    sampler = ClassBalancedSampler(labels, seed=3)
    drawn = Counter(labels[index] for epoch in range(20) for index in (sampler.set_epoch(epoch) or sampler))
    # 2,000 draws: about 667 per class; without balancing 1,800 / 180 / 20.
    assert all(560 < drawn[label] < 780 for label in range(3)), drawn
    sampler.set_epoch(0)
    first = list(sampler)
    assert first == list(sampler) and len(first) == len(sampler) == 100
    sampler.set_epoch(1)
    assert list(sampler) != first
    ranks = [ClassBalancedSampler(labels, num_replicas=2, rank=rank, seed=3) for rank in range(2)]
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(first)  # the same draw, split between the ranks


def test_class_balanced_runs_and_is_refused_with_dali(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--class-balanced", "--no-repeated-aug"], capsys
    )
    assert code == 0
    from deit.engine.builders import build_loaders
    from deit.engine.distributed import DistributedEnv
    from deit.errors import DeitError

    with pytest.raises(DeitError, match="--class-balanced: needs an indexable data set"):
        build_loaders(
            make_config(class_balanced=True, data_loader="dali"), None, None, DistributedEnv(), torch.device("cpu")
        )


def test_kept_heads_are_matched_to_the_data_classes_by_name(tmp_path: Path) -> None:
    import deit
    from deit.engine.finetune import load_finetune
    from deit.errors import DeitError
    from tiny_checkpoints import TINY_MODEL, TINY_OVERRIDES, TINY_SIZE, save_tiny_checkpoint

    source = save_tiny_checkpoint(tmp_path / "abc.pth")  # apple, banana, cherry
    saved = torch.load(source, weights_only=True)["model"]

    def load(names: list[str], **flags: bool) -> tuple[torch.nn.Module, object]:
        model = deit.create_model(TINY_MODEL, img_size=TINY_SIZE, num_classes=3, **TINY_OVERRIDES)
        origin = load_finetune(model, source, flag_model=TINY_MODEL, flag_kwargs={}, class_names=names, **flags)
        return model, origin

    model, origin = load(["cherry", "apple", "banana"])  # the same classes, listed in another order
    for head in ("head", "head_dist"):
        assert torch.equal(getattr(model, head).weight, saved[f"{head}.weight"][[2, 0, 1]])
        assert torch.equal(getattr(model, head).bias, saved[f"{head}.bias"][[2, 0, 1]])
    assert "--finetune: classes matched by name (the data lists them in another order)" in origin.lines(TINY_MODEL)
    with pytest.raises(DeitError, match="the training data: its class names are not --finetune .*abc.pth's"):
        load(["x", "y", "z"])
    model, origin = load(["x", "y", "z"], by_position=True)
    assert torch.equal(model.head.weight, saved["head.weight"]) and "by position" in origin.class_matching
    model, origin = load(["apple", "banana", "cherry"])
    assert origin.class_matching is None and torch.equal(model.head.weight, saved["head.weight"])
