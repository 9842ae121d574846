"""TrainConfig: official flags and defaults, YAML precedence, refusals and the cheap pre-flight checks."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml

from deit.cli import build_parser, main
from deit.engine.config import TrainConfig, config_from_args, load_yaml_settings, save_config_yaml
from deit.engine.preflight import validate_config
from deit.errors import DeitError

# Every flag of the official main.py (facebookresearch/deit), with a non-default value where it takes one.
OFFICIAL_ARGV = [
    "--batch-size",
    "32",
    "--epochs",
    "7",
    "--bce-loss",
    "--unscale-lr",
    "--model",
    "deit_small_patch16_224",
    "--input-size",
    "192",
    "--drop",
    "0.1",
    "--drop-path",
    "0.2",
    "--no-model-ema",
    "--model-ema-decay",
    "0.999",
    "--model-ema-force-cpu",
    "--opt",
    "lamb",
    "--opt-eps",
    "1e-6",
    "--opt-betas",
    "0.9",
    "0.95",
    "--clip-grad",
    "1.0",
    "--momentum",
    "0.8",
    "--weight-decay",
    "0.02",
    "--sched",
    "step",
    "--lr",
    "1e-3",
    "--lr-noise",
    "0.4",
    "0.9",
    "--lr-noise-pct",
    "0.5",
    "--lr-noise-std",
    "0.5",
    "--warmup-lr",
    "1e-7",
    "--min-lr",
    "1e-6",
    "--decay-epochs",
    "20",
    "--warmup-epochs",
    "2",
    "--cooldown-epochs",
    "3",
    "--patience-epochs",
    "4",
    "--decay-rate",
    "0.5",
    "--color-jitter",
    "0.4",
    "--aa",
    "rand-m7",
    "--smoothing",
    "0.0",
    "--train-interpolation",
    "bilinear",
    "--no-repeated-aug",
    "--no-train-mode",
    "--ThreeAugment",
    "--src",
    "--reprob",
    "0.1",
    "--remode",
    "const",
    "--recount",
    "2",
    "--mixup",
    "0.5",
    "--cutmix",
    "0.0",
    "--cutmix-minmax",
    "0.2",
    "0.8",
    "--mixup-prob",
    "0.5",
    "--mixup-switch-prob",
    "0.3",
    "--mixup-mode",
    "elem",
    "--teacher-model",
    "resnet50",
    "--teacher-path",
    "t.pth",
    "--distillation-type",
    "hard",
    "--distillation-alpha",
    "0.3",
    "--distillation-tau",
    "2.0",
    "--finetune",
    "f.pth",
    "--attn-only",
    "--data-path",
    "/data",
    "--data-set",
    "IMNET",
    "--inat-category",
    "name",
    "--output_dir",
    "out",
    "--device",
    "cpu",
    "--seed",
    "3",
    "--resume",
    "r.pth",
    "--start_epoch",
    "2",
    "--eval",
    "--eval-crop-ratio",
    "1.0",
    "--dist-eval",
    "--num_workers",
    "4",
    "--no-pin-mem",
    "--distributed",
    "--world_size",
    "2",
    "--dist_url",
    "tcp://127.0.0.1:1234",
]


def parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser("train").parse_args(["train", *argv]))


def test_defaults_are_the_official_recipe_except_the_offline_data_set() -> None:
    config = parse([])
    assert (config.batch_size, config.epochs, config.lr, config.weight_decay, config.opt) == (
        64,
        300,
        5e-4,
        0.05,
        "adamw",
    )
    assert (config.sched, config.warmup_epochs, config.warmup_lr, config.min_lr) == ("cosine", 5, 1e-6, 1e-5)
    assert (config.smoothing, config.drop_path, config.reprob, config.mixup, config.cutmix) == (
        0.1,
        0.1,
        0.25,
        0.8,
        1.0,
    )
    assert config.aa == "rand-m9-mstd0.5-inc1" and config.repeated_aug and config.model_ema
    assert config.model_ema_decay == 0.99996 and config.distillation_alpha == 0.5
    assert config.teacher_model == "regnety_160"
    assert config.data_set == "auto" and config.model == "deit_base_patch16_224"


def test_every_official_flag_is_accepted_with_its_meaning() -> None:
    config = parse(OFFICIAL_ARGV)
    assert config.batch_size == 32 and config.bce_loss and config.unscale_lr and not config.model_ema
    assert config.opt_betas == [0.9, 0.95] and config.lr_noise == [0.4, 0.9] and config.cutmix_minmax == [0.2, 0.8]
    assert config.three_augment and config.src and not config.repeated_aug and not config.train_mode
    assert config.distillation_type == "hard" and config.output_dir == "out" and config.start_epoch == 2
    assert config.dist_eval and not config.pin_mem and config.distributed and config.world_size == 2
    assert config.decay_rate == 0.5 and config.dist_url == "tcp://127.0.0.1:1234"


# The 76 option strings of the official main.py's parser (facebookresearch/deit at 7e160fe), in its order.
OFFICIAL_FLAGS = (
    "--batch-size --epochs --bce-loss --unscale-lr --model --input-size --drop --drop-path --model-ema "
    "--no-model-ema --model-ema-decay --model-ema-force-cpu --opt --opt-eps --opt-betas --clip-grad --momentum "
    "--weight-decay --sched --lr --lr-noise --lr-noise-pct --lr-noise-std --warmup-lr --min-lr --decay-epochs "
    "--warmup-epochs --cooldown-epochs --patience-epochs --decay-rate --dr --color-jitter --aa --smoothing "
    "--train-interpolation --repeated-aug --no-repeated-aug --train-mode --no-train-mode --ThreeAugment --src "
    "--reprob --remode --recount --resplit --mixup --cutmix --cutmix-minmax --mixup-prob --mixup-switch-prob "
    "--mixup-mode --teacher-model --teacher-path --distillation-type --distillation-alpha --distillation-tau "
    "--cosub --finetune --attn-only --data-path --data-set --inat-category --output_dir --device --seed --resume "
    "--start_epoch --eval --eval-crop-ratio --dist-eval --num_workers --pin-mem --no-pin-mem --distributed "
    "--world_size --dist_url"
).split()


def test_all_76_official_flags_are_accepted_and_pass_the_checks(tmp_path: Path) -> None:
    assert len(OFFICIAL_FLAGS) == 76
    known = build_parser("train")._subparsers._group_actions[0].choices["train"]._option_string_actions
    assert [flag for flag in OFFICIAL_FLAGS if flag not in known] == []
    # OFFICIAL_ARGV gives all but these; parsed here with their meaning
    rest = ["--model-ema", "--repeated-aug", "--train-mode", "--pin-mem", "--dr", "0.5", "--cosub", "--resplit"]
    assert set(OFFICIAL_FLAGS) - {arg for arg in OFFICIAL_ARGV + rest if arg.startswith("--")} == set()
    config = parse(["--model", "deit_tiny_patch16_224", "--input-size", "32", *rest])
    assert config.model_ema and config.repeated_aug and config.train_mode and config.pin_mem
    assert config.decay_rate == 0.5 and config.cosub and config.resplit
    with pytest.warns(UserWarning, match="--resplit has no effect"):
        validate_config(config)


def test_dashed_aliases_and_model_kwargs_json() -> None:
    config = parse(["--output-dir", "o", "--num-workers", "1", "--model-kwargs", '{"depth": 2, "patch_size": 4}'])
    assert config.output_dir == "o" and config.num_workers == 1
    assert config.model_kwargs == {"depth": 2, "patch_size": 4}
    with pytest.raises(DeitError, match="--model-kwargs"):
        parse(["--model-kwargs", "[1, 2"])


def test_yaml_overrides_defaults_and_flags_override_yaml(tmp_path: Path) -> None:
    settings = tmp_path / "run.yaml"
    settings.write_text("batch-size: 8\nlr: 0.001\nThreeAugment: true\nmodel_kwargs: {depth: 2}\nepochs: 4\n")
    config = parse(["--config", str(settings), "--epochs", "9"])
    assert config.batch_size == 8 and config.lr == 0.001 and config.three_augment
    assert config.model_kwargs == {"depth": 2} and config.epochs == 9


def test_yaml_unknown_key_and_wrong_type_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 8\n")
    with pytest.raises(DeitError, match="batch_sise.*did you mean.*batch_size"):
        load_yaml_settings(bad)
    bad.write_text("epochs: many\n")
    with pytest.raises(DeitError, match="'epochs' must be an integer"):
        load_yaml_settings(bad)


def test_saved_config_yaml_round_trips(tmp_path: Path) -> None:
    config = parse(OFFICIAL_ARGV[:20])
    save_config_yaml(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["batch_size"] == 32
    assert parse(["--config", str(tmp_path / "config.yaml")]) == config


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cosub", "--teacher-path", "t", "--distillation-type", "hard"], "--cosub with --distillation-type hard"),
        (["--model", "deit_tiny_patch16_22"], "did you mean deit_tiny_patch16_224"),
        (["--model", "deit_tiny_patch16_224", "--input-size", "100"], "not divisible by the patch size 16"),
        (["--model", "resnet18", "--distillation-type", "hard"], "needs --teacher-path"),
        (
            [
                "--model",
                "resnet18",
                "--teacher-model",
                "resnet5O",
                "--distillation-type",
                "hard",
                "--teacher-path",
                "x",
            ],
            "--teacher-model resnet5O: unknown model; did you mean",
        ),
        (["--model", "resnet18", "--batch-size", "15"], "even batch size"),
        (["--model", "resnet18", "--model-kwargs", '{"img_size": 64}'], "use --input-size"),
        (["--model", "resnet18", "--bce-target-thresh", "0.2"], "--bce-target-thresh needs --bce-loss"),
    ],
)
def test_bad_settings_fail_before_any_work(flags: list[str], message: str) -> None:
    with pytest.raises(DeitError, match=message):
        validate_config(parse(flags))


def test_wrong_data_path_layout_is_one_line_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "train").mkdir()
    code = main(["train", "--model", "resnet18", "--data-set", "IMNET", "--data-path", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "missing val/" in err and len(err.strip().splitlines()) == 1


def test_help_lists_official_and_own_flags(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--teacher-path", "--distillation-type", "--output_dir", "--nan-policy", "--amp", "DIGITS"):
        assert flag in out
    for flag in ("--scale PCT", "--ratio RATIO", "--threads N", "--memory-cap-gib GIB", "--eval-crop-ratio"):
        assert flag in out
    assert "--debug-inject-nan-step" not in out


def test_the_crop_and_thread_flags_are_documented_in_training_md() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    for flag in ("`--scale LOW HIGH`", "`--ratio LOW HIGH`", "`--threads N`", "`--memory-cap-gib G`"):
        assert f"| {flag}" in text or f", {flag} |" in text, flag
    assert "`deit eval`, `deit predict` and `deit export` use it (each has `--eval-crop-ratio`" in text


def test_scale_ratio_and_threads_parse_with_timms_meaning_and_bounds(capsys: pytest.CaptureFixture) -> None:
    config = parse(["--scale", "0.35", "1", "--ratio", "0.5", "2", "--threads", "3"])
    assert (config.scale, config.ratio, config.threads) == ([0.35, 1.0], [0.5, 2.0], 3)
    assert (parse([]).scale, parse([]).ratio, parse([]).threads) == (None, None, 0)
    for flags, message in (
        (["--scale", "0.5"], "--scale: takes 2 values, got 1"),
        (["--scale", "0", "1"], "--scale"),
        (["--threads", "-1"], "--threads"),
    ):
        assert main(["train", *flags]) == 2
        assert message in capsys.readouterr().err


def test_threads_default_to_what_the_cores_and_workers_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    from deit.engine import run_report

    monkeypatch.setattr(run_report, "usable_cores", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert run_report.choose_threads(0, 2)[0] == 6
    assert run_report.choose_threads(0, 0)[0] == 8
    assert run_report.choose_threads(0, 12)[0] == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four processes share the node's cores
    threads, line = run_report.choose_threads(0, 1)
    assert threads == 1 and "8 usable cores / 4 processes, 1 loader workers" in line
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # OMP_NUM_THREADS or the caller narrowed it
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert run_report.choose_threads(0, 0)[0] == 2
    assert run_report.choose_threads(5, 0) == (5, "threads: 5 torch intra-op threads (--threads)")


def test_unset_flags_stay_absent_so_yaml_can_fill_them() -> None:
    args = build_parser("train").parse_args(["train", "--epochs", "3"])
    assert isinstance(args, argparse.Namespace) and "epochs" in vars(args) and "lr" not in vars(args)


def test_help_lists_only_data_sets_that_can_be_built() -> None:
    from deit.data import DATASET_NAMES
    from deit.data.datasets import data_set_key

    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "data_set").metadata["help"]
    listed = {data_set_key(name) for name in re.findall(r"\b[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)*\b", help_text)}
    assert listed == set(DATASET_NAMES) and help_text.startswith("auto")


@pytest.mark.parametrize(("flags", "expected"), [([], 0.0), (["--bce-target-thresh", "0.3"], 0.3)])
def test_bce_target_threshold_reaches_the_criterion(flags: list[str], expected: float) -> None:
    from deit.engine.builders import build_criterion

    config = parse(["--bce-loss", *flags])
    validate_config(config)
    criterion = build_criterion(config, None, mixup_active=True)
    assert criterion.base_criterion.target_threshold == expected
