"""`deit demo`: a real (tiny) run end to end, the run configurations, the summary statistics and the verdict."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path

import pytest

from deit.cli import main
from deit.demo import findings as demo_findings
from deit.demo import report as demo_report
from deit.demo.experiment import (
    DISTILLED_STUDENT,
    HEADLINE_KIND,
    PLAIN_STUDENT,
    STUDENT_KINDS,
    DemoSettings,
    plan_runs,
    student_config,
    teacher_config,
)
from deit.demo.runs import Job, _PrefixedLines, execute
from deit.errors import DeitError
from deit.io import load_torch_file

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_demo_writes_results_tables_and_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The default CPU path: one spawned process per run, each size's distilled students after its teacher.
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "--table3", "--jobs", "2", "--output-dir", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "[demo] 8/8 done" in printed and "soft distillation vs no distillation at 50%" in printed

    results = json.loads((output / "results.json").read_text())
    # the full-size row keeps the old keys: teacher.top1 and students.<kind>.fused
    assert 0.0 <= results["teacher"]["top1"] <= 1.0 and results["teacher"]["fraction"] == 1.0
    assert set(results["students"]) == set(STUDENT_KINDS)
    for kind, student in results["students"].items():
        assert 0.0 <= student["cls"] <= 1.0 and 0.0 <= student["fused"] <= 1.0
        assert len(student["per_seed"]) == 1 and student["fused_std"] is None  # one seed: no spread
        assert [point["epoch"] for point in student["curve"]] == [2]  # evaluated every 4th epoch and at the last
        run_dir = Path(student["per_seed"][0]["run_dir"])
        assert (run_dir / "checkpoint.pth").is_file() and (run_dir / "log.txt").is_file()
        assert run_dir.parent.name == "f100"
        if kind == "none":  # the plain architecture has one head: fused is its class head
            assert student["dist"] is None and student["cosine"] is None
            assert student["fused"] == student["cls"]
            assert student["model"] == PLAIN_STUDENT
        else:
            assert 0.0 <= student["dist"] <= 1.0
            assert -1.0 <= student["cosine"] <= 1.0
            assert student["model"] == DISTILLED_STUDENT
    assert results["students"]["hard"]["distillation_type"] == "hard"
    assert results["students"]["two_cls_tokens"]["distillation_type"] == "labels"

    # per-size rows: the subset trained on its own images, its own teacher, the subset kinds only
    half, full = results["sizes"]
    assert (half["fraction"], half["images"], full["fraction"], full["images"]) == (0.5, 718, 1.0, 1437)
    assert half["epochs"] == full["epochs"] == 2  # the same epochs, each of two passes over the half
    assert [point["fraction"] for point in results["curve"]] == [0.5, 1.0]
    assert results["curve"][0]["none"] == [round(100 * half["students"]["none"]["fused"], 2)]
    assert "headline_curve" not in results  # the headline is the curve's smallest size here
    assert set(half["students"]) == {"none", "soft"} and set(full["students"]) == set(STUDENT_KINDS)
    assert 0.0 <= half["teacher"]["top1"] <= 1.0 and "f050" in half["teacher"]["run_dir"]
    assert half["students"]["soft"]["cosine"] is None  # the token similarity is measured at the full size only
    soft_run = Path(half["students"]["soft"]["per_seed"][0]["run_dir"])
    args = load_torch_file(soft_run / "checkpoint.pth")["args"]
    assert args["train_subset"] == 0.5 and args["teacher_path"] == str(
        Path(half["teacher"]["run_dir"]) / "checkpoint.pth"
    )
    assert args["distillation_kl_reduction"] == "batchmean" and args["distillation_tau"] == 3.0
    assert args["epoch_repeats"] == 2 and args["recipe"] == "small-data" and args["sched_on_updates"]

    headline = results["headline"]
    assert (headline["fraction"], headline["kind"]) == (0.5, HEADLINE_KIND)
    gap = half["students"]["soft"]["fused"] - half["students"]["none"]["fused"]
    assert headline["per_seed_gain"] == pytest.approx([gap]) and headline["gain"] == pytest.approx(gap)
    assert results["verdict"].startswith("Not resolved") and "single seed" in results["verdict"]
    assert headline["interval"] is None and results["training_check"]["stalls"] == []
    assert results["where_the_teacher_helps"].startswith("Where the teacher helps needs two seeds")
    assert results["timings"]["training_seconds"] > 0 and results["machine"]["cores"] >= 1

    report = (output / "results.md").read_text()
    assert "| 50% (718 images, 2 epochs) | 100% (1,437 images, 2 epochs) |" in report
    for kind in STUDENT_KINDS:
        row = next(line for line in report.splitlines() if line.startswith(f"| {demo_report.STUDENT_TITLES[kind]} |"))
        assert row.count("|") == 4  # the size table: the kind and two sizes
    assert "| teacher: ResNet-18, quarter width |" in report  # the full-size Table 3 analogue
    for picture in ("data_efficiency.png", "curves.png"):
        assert (output / picture).read_bytes()[:8] == PNG_MAGIC


def test_student_configurations_follow_the_paper() -> None:
    settings = DemoSettings(output_dir="out")
    configs = {kind: student_config(settings, kind, 1, teacher_path="t.pth") for kind in STUDENT_KINDS}
    assert configs["none"].model == PLAIN_STUDENT and configs["none"].distillation_type == "none"
    assert configs["two_cls_tokens"].model == DISTILLED_STUDENT
    assert configs["two_cls_tokens"].distillation_type == "labels" and not configs["two_cls_tokens"].teacher_path
    assert configs["soft"].distillation_type == "soft" and configs["hard"].teacher_path == "t.pth"
    assert (configs["soft"].distillation_alpha, configs["soft"].distillation_tau) == (0.9, 3.0)
    assert configs["soft"].distillation_kl_reduction == "batchmean" and configs["hard"].distillation_alpha == 0.5
    for config in configs.values():
        # the same student dims for every row, digits are never mirrored, one run directory per kind and seed
        assert config.model_kwargs == settings.student_kwargs
        assert config.hflip == 0.0 and config.seed == 1 and config.epochs == settings.epochs
        assert config.train_subset == 1.0
    assert len({config.output_dir for config in configs.values()}) == len(STUDENT_KINDS)
    quarter = student_config(settings, "soft", 0, teacher_path="t.pth", fraction=0.25)
    # a quarter of the images passes four times per epoch: the same epochs, steps, warmup and evaluations
    assert quarter.train_subset == 0.25 and quarter.epochs == settings.epochs and quarter.epoch_repeats == 4
    assert configs["soft"].epoch_repeats == 1 and student_config(settings, "none", 0, fraction=0.05).epoch_repeats == 20
    assert quarter.train_subset_seed == settings.subset_seed and "f025" in quarter.output_dir
    assert configs["soft"].eval_interval == quarter.eval_interval == teacher_config(settings, 0.25).eval_interval
    assert configs["soft"].warmup_epochs == quarter.warmup_epochs == settings.warmup_epochs
    # the small-data recipe underneath: the schedule stepped per update, the lr used as given
    assert quarter.recipe == "small-data" and quarter.sched_on_updates and quarter.unscale_lr
    assert (quarter.lr, quarter.batch_size) == (settings.lr, settings.batch_size)
    canvas = student_config(settings, "none", 0, fraction=0.25, data_set="DIGITS-CANVAS")
    assert canvas.data_set == "DIGITS-CANVAS" and "canvas/f025" in canvas.output_dir
    teacher = teacher_config(settings)
    assert teacher.distillation_type == "none" and teacher.epochs == settings.teacher_epochs
    assert teacher.lr == settings.teacher_lr and teacher_config(settings, 0.5).epoch_repeats == 2
    with pytest.raises(DeitError, match="teacher"):
        student_config(settings, "hard", 0)
    with pytest.raises(DeitError, match="unknown student kind"):
        student_config(settings, "medium", 0)


def test_the_protocols_teacher_and_augmentation_settings_reach_the_runs() -> None:
    default = DemoSettings(output_dir="out")
    teacher = teacher_config(default, 0.03)
    # by default the teacher is trained by the students' recipe: smoothing 0.1, no mixup, no RandAugment
    assert (teacher.smoothing, teacher.mixup, teacher.aa) == (0.1, 0.0, "none")
    changed = DemoSettings(
        output_dir="out",
        teacher_mixup=0.8,
        teacher_aa="rand-m9-mstd0.5-inc1",
        teacher_smoothing=0.0,
        mixup=0.8,
        mixup_kinds=("none", "soft"),
        student_aa="rand-m9-mstd0.5-inc1",
    )
    teacher = teacher_config(changed, 0.03)
    assert (teacher.smoothing, teacher.mixup, teacher.cutmix, teacher.aa) == (0.0, 0.8, 0.0, "rand-m9-mstd0.5-inc1")
    plain, soft = (student_config(changed, kind, 0, "t.pth", 0.03) for kind in ("none", "soft"))
    for student in (plain, soft):
        assert (student.mixup, student.cutmix, student.aa, student.smoothing) == (0.8, 0.0, "rand-m9-mstd0.5-inc1", 0.1)
    # a mixed image is no table view: the function-matching student runs its teacher per step
    assert soft.teacher_table == "off"
    untouched = student_config(changed, "hard", 0, "t.pth", 0.03)
    assert (untouched.mixup, untouched.aa, untouched.teacher_table) == (0.0, "none", "on")


def test_plan_runs_trains_each_size_with_its_own_teacher() -> None:
    settings = DemoSettings(
        output_dir="out",
        seeds=2,
        sizes=(1.0, 0.25, 0.5),
        full_size_kinds=STUDENT_KINDS,
        headline_data_set="DIGITS",
        headline_size=0.25,
        headline_seeds=2,
    )
    first, distilled, total = plan_runs(settings)
    teachers = [job for job in first if job.kind == "teacher"]
    assert [job.fraction for job in teachers] == [0.25, 0.5, 1.0] and first[:3] == teachers  # teachers start first
    labels_only = {(job.kind, job.fraction, job.seed) for job in first[3:]}
    assert labels_only == {
        (kind, fraction, seed)
        for seed in (0, 1)
        for fraction in (0.25, 0.5, 1.0)
        for kind in ("none", "two_cls_tokens")
        if kind == "none" or fraction == 1.0
    }
    unlocked = distilled(teachers[0], "t25.pth")
    assert {(job.kind, job.fraction, job.seed) for job in unlocked} == {("soft", 0.25, 0), ("soft", 0.25, 1)}
    assert all(job.config.teacher_path == "t25.pth" and not job.measure_cosine for job in unlocked)
    full = distilled(teachers[2], "t100.pth")
    assert {job.kind for job in full} == {"soft", "hard"} and all(job.measure_cosine for job in full)
    assert total == 3 + 2 * (2 + 2 + 4) == len(first) + len(unlocked) + len(distilled(teachers[1], "x")) + len(full)


def test_a_separate_headline_setting_has_its_own_teacher_and_seeds() -> None:
    settings = DemoSettings(
        output_dir="out",
        seeds=2,
        sizes=(0.25, 1.0),
        headline_data_set="digits-canvas",
        headline_size=0.25,
        headline_seeds=4,
    )
    assert settings.headline_key == ("DIGITS-CANVAS", 0.25) and settings.separate_headline
    first, distilled, total = plan_runs(settings)
    teachers = [job for job in first if job.kind == "teacher"]
    assert [job.size_key for job in teachers] == [("DIGITS", 0.25), ("DIGITS", 1.0), ("DIGITS-CANVAS", 0.25)]
    canvas = [job for job in first if job.data_set == "DIGITS-CANVAS" and job.kind == "none"]
    assert [job.seed for job in canvas] == [0, 1, 2, 3]
    unlocked = distilled(teachers[2], "canvas.pth")
    assert {(job.kind, job.seed, job.data_set) for job in unlocked} == {("soft", s, "DIGITS-CANVAS") for s in range(4)}
    assert all(
        job.config.data_set == "DIGITS-CANVAS" and job.label.startswith("soft DIGITS-CANVAS 25%") for job in unlocked
    )
    # the curve: none and soft at both sizes (the Table 3 rows only with --table3), 2 seeds; the headline: 4
    assert total == 3 + 2 * 2 * 2 + 2 * 4
    # the headline on a curve size widens that size's seeds instead
    merged = DemoSettings(output_dir="out", seeds=2, sizes=(0.05, 1.0), headline_data_set="DIGITS", headline_size=0.05)
    assert not merged.separate_headline and len(merged.seeds_at("DIGITS", 0.05)) == merged.headline_seeds
    assert len(merged.seeds_at("DIGITS", 1.0)) == 2
    with pytest.raises(DeitError, match="--headline-data-set CIFAR"):
        DemoSettings(headline_data_set="CIFAR").validate()


def test_first_seed_moves_every_student_to_fresh_seeds() -> None:
    settings = DemoSettings(
        output_dir="out", seeds=2, first_seed=100, sizes=(0.25, 1.0), headline_size=0.25, headline_seeds=2
    )
    first, distilled, _ = plan_runs(settings)
    teacher = next(job for job in first if job.kind == "teacher" and job.fraction == 0.25)
    students = [job for job in first if job.kind != "teacher"] + distilled(teacher, "t.pth")
    assert {job.seed for job in students} == {100, 101}
    assert {job.config.seed for job in students} == {100, 101}
    assert all(job.seed == 0 for job in first if job.kind == "teacher")  # the teachers stay the same
    assert any(str(job.config.output_dir).endswith("soft_seed101") for job in students)


def test_a_failed_run_names_itself(tmp_path: Path) -> None:
    settings = DemoSettings.quick(output_dir=str(tmp_path))
    job = Job("hard", 2, student_config(settings, "hard", 2, teacher_path=str(tmp_path / "missing.pth")))
    with pytest.raises(DeitError, match="demo run 'hard 100% seed 2' failed.*--teacher-path"):
        execute(job)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0"], "--seeds 0"),
        (["--epochs", "0"], "--epochs 0"),
        (["--jobs", "-1"], "--jobs -1"),
        (["--first-seed", "-3"], "--first-seed -3"),
        (["--sizes", "0.5,2"], "--sizes 0.5,2"),
    ],
)
def test_bad_flags_are_one_line_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *flags, "--output-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def _student(kind: str, fused: list[float], cosine: float | None = 0.9) -> dict:
    runs = [
        {
            "seed": seed,
            "model": "m",
            "distillation_type": "none",
            "cosine": cosine,
            "seconds": 1.0,
            "run_dir": "r",
            "metrics": {
                "acc1": 100 * value,
                "cls_acc1": 100 * value,
                **({} if kind == "none" else {"dist_acc1": 100 * value}),
            },
            "curve": [{"epoch": 1, "fused": value, "cls": value, "dist": None}],
        }
        for seed, value in enumerate(fused)
    ]
    return demo_report.summarise_student(kind, runs)


def _size(fraction: float, images: int, fused: dict[str, list[float]]) -> dict:
    runs = [
        {
            "seed": seed,
            "kind": kind,
            "model": "m",
            "distillation_type": kind,
            "cosine": None,
            "seconds": 1.0,
            "run_dir": "r",
            "metrics": {"acc1": 100 * value, "cls_acc1": 100 * value},
            "curve": [{"epoch": 1, "fused": value, "cls": value, "dist": None}],
        }
        for kind, values in fused.items()
        for seed, value in enumerate(values)
    ]
    teacher = {"metrics": {"acc1": 97.5}, "seconds": 2.0, "run_dir": "t"}
    return demo_report.summarise_size(fraction, teacher, runs, images=images, epochs=10, teacher_epochs=8)


def test_summary_uses_sample_std_and_pairs_seeds() -> None:
    none = _student("none", [0.90, 0.92, 0.94], cosine=None)
    hard = _student("hard", [0.93, 0.95, 0.93])
    assert none["fused"] == pytest.approx(0.92) and none["fused_std"] == pytest.approx(0.02)
    assert none["dist"] is None and none["cosine"] is None
    assert hard["curve"][0]["fused_min"] == pytest.approx(0.93)
    comparison = demo_report.paired_comparison({"none": none, "hard": hard}, "hard")
    assert comparison["per_seed"] == pytest.approx([0.03, 0.03, -0.01])
    assert comparison["wins"] == 2 and comparison["losses"] == 1 and comparison["mean"] == pytest.approx(0.05 / 3)
    assert demo_findings.mean_std([]) == (None, None) and demo_findings.mean_std([0.5])[1] is None
    assert math.isclose(demo_findings.mean_std([0.0, 1.0])[1], math.sqrt(0.5))


def test_headline_and_verdict_when_every_seed_gains() -> None:
    sizes = [
        _size(0.25, 359, {"none": [0.70, 0.74, 0.72], "soft": [0.78, 0.79, 0.73]}),
        _size(1.0, 1437, {"none": [0.90, 0.91, 0.92], "soft": [0.93, 0.90, 0.95], "hard": [0.80, 0.85, 0.88]}),
    ]
    headline = demo_report.headline(sizes, 0.25, "soft")
    assert set(headline) >= {"fraction", "kind", "gain", "per_seed_gain"}
    assert headline["per_seed_gain"] == pytest.approx([0.08, 0.05, 0.01])
    assert headline["gain"] == pytest.approx(0.14 / 3)
    sentence = demo_report.verdict(headline)
    assert sentence == (  # every seed better, but three seeds this spread leave zero inside the interval
        "Not resolved: soft distillation vs no distillation at 25% of the training set (359 images): fused top-1 "
        "+4.7 ± 3.5 points (paired by seed, 95% interval [-4.1, +13.4]), better on 3 of 3 seeds; the interval "
        "includes zero; it closed 18% of the plain student's gap to its teacher."  # mean of 8/27.5, 5/23.5, 1/25.5
    )
    expected = "Better than no distillation on every seed: soft distillation at 25%."
    assert demo_report.every_seed_sentence(sizes) == expected
    assert demo_report.headline(sizes, 0.5, "soft") is None and demo_report.headline(sizes, 0.25, "hard") is None
    assert demo_report.verdict(None) == "The headline comparison was not measured in this run."
    gains = demo_report.gain_table({"sizes": sizes})
    assert "| soft | +4.7 ± 3.5 (3/3 seeds better) | +1.7 ± 2.3 (2/3 seeds better) |" in gains
    assert "| hard | – | -6.7 ± 3.1 (0/3 seeds better) |" in gains


def test_verdict_says_not_resolved_when_the_interval_includes_zero() -> None:
    sizes = [_size(0.25, 359, {"none": [0.70, 0.74, 0.72], "soft": [0.78, 0.72, 0.72]})]
    sentence = demo_report.verdict(demo_report.headline(sizes, 0.25, "soft"))
    assert sentence.startswith("Not resolved: soft distillation vs no distillation at 25% of the training set")
    assert "better on 1 of 3 seeds, tied on 1; the interval includes zero; it closed" in sentence
    assert demo_report.every_seed_sentence(sizes) == (
        "No variant beat no distillation on every seed at any training-set size."
    )


def test_the_verdict_rests_on_the_interval_and_no_single_seed_can_flip_it() -> None:
    from deit.demo.findings import seed_that_flips

    # 15 seeds: 13 better, 2 worse; the interval is above zero with any one seed left out: resolved, with the tally
    none = [0.70 + 0.01 * (i % 5) for i in range(15)]
    gains = [0.05, 0.03, 0.04, -0.01, 0.06, 0.02, 0.05, 0.04, 0.03, -0.02, 0.05, 0.04, 0.03, 0.06, 0.02]
    many = [_size(0.03, 43, {"none": none, "soft": [n + g for n, g in zip(none, gains)]})]
    headline = demo_report.headline(many, 0.03, "soft")
    assert headline["seed_that_flips"] is None and headline["interval"][0] > 0
    sentence = demo_report.verdict(headline)
    assert sentence.startswith("Soft distillation beat no distillation at 3% of the training set (43 images)")
    assert "better on 13 of 15 seeds" in sentence
    # one outlying gain widens the interval over zero; without it the interval is above zero: that seed decides
    assert seed_that_flips([1.0, 1.2, 0.9, 9.0], [10, 11, 12, 13]) == 13
    assert seed_that_flips([1.0, 1.2, 0.9, 1.1, 1.3], [0, 1, 2, 3, 4]) is None
    # above zero with all five; leaving out seed 0 (the first that does it) puts zero inside
    assert seed_that_flips([0.5, 0.6, 0.4, 0.5, -0.1], [0, 1, 2, 3, 4]) == 0
    shaky = [_size(0.03, 43, {"none": [0.70] * 5, "soft": [0.705, 0.705, 0.705, 0.705, 0.73]})]
    flipped = demo_report.headline(shaky, 0.03, "soft")
    assert flipped["interval"][0] < 0 < flipped["interval"][1] and flipped["seed_that_flips"] == 4
    assert "one seed decides it (without seed 4 the interval says otherwise)" in demo_report.verdict(flipped)
    # fewer than four pairs: what is left is no test (one or two degrees of freedom)
    assert seed_that_flips([1.0, 2.0], [0, 1]) is None and seed_that_flips([5.0, 4.0, 5.0], [0, 1, 2]) is None


def test_verdict_says_plainly_when_distillation_loses() -> None:
    sizes = [_size(0.1, 144, {"none": [0.95, 0.96], "hard": [0.90, 0.91]})]
    sentence = demo_report.verdict(demo_report.headline(sizes, 0.1, "hard"))
    assert sentence == (
        "Hard distillation did not beat no distillation at 10% of the training set (144 images): "
        "fused top-1 -5.0 ± 0.0 points (paired by seed, 95% interval [-5.0, -5.0]), worse on 2 of 2 seeds."
    )
    single = [_size(1.0, 1437, {"none": [0.9], "soft": [0.95]})]
    assert "single seed" in demo_report.verdict(demo_report.headline(single, 1.0, "soft"))
    assert demo_report.every_seed_sentence(single) == "With a single seed no comparison is resolved."


def test_prefixed_lines_keep_parallel_output_readable() -> None:
    sink = io.StringIO()
    stream = _PrefixedLines(sink, "[hard seed 0] ")
    stream.write("epoch 1/2: ")
    assert sink.getvalue() == ""  # nothing until the line is complete
    stream.write("loss 1.0\nepoch 2/2\n")
    assert sink.getvalue() == "[hard seed 0] epoch 1/2: loss 1.0\n[hard seed 0] epoch 2/2\n"


def test_hflip_zero_removes_the_training_flip() -> None:
    from torchvision import transforms as T

    from deit.data import build_transform
    from deit.engine.config import make_config

    def flips(transform: object) -> list:
        found = []
        for step in getattr(transform, "transforms", []):
            found += [step] if isinstance(step, T.RandomHorizontalFlip) else flips(step)
        return found

    assert flips(build_transform(True, input_size=32, auto_augment="none"))[0].p == 0.5  # the paper's default
    assert flips(build_transform(True, input_size=32, auto_augment="none", hflip=0.0)) == []
    assert flips(build_transform(True, input_size=32, three_augment=True, hflip=0.0)) == []
    assert make_config(hflip=0).hflip == 0.0
    with pytest.raises(DeitError, match="--hflip 1.5"):
        build_transform(True, input_size=32, hflip=1.5)


@pytest.mark.slow
def test_one_job_runs_inline_and_restores_threads(tmp_path: Path) -> None:
    # The GPU / single-core path: runs one after another in this process, which must be left as it was found.
    import torch

    from deit.demo.experiment import run_demo

    threads = torch.get_num_threads()
    settings = DemoSettings.quick(output_dir=str(tmp_path), jobs=1, epochs=1, max_steps_per_epoch=3, sizes=(1.0,))
    results = run_demo(settings)
    assert torch.get_num_threads() == threads
    assert results["config"]["jobs"] == 1
    assert [point["epoch"] for point in results["students"]["soft"]["curve"]] == [1]
    assert (tmp_path / "results.json").is_file()


def test_parallelism_plan() -> None:
    from deit.demo.runs import plan_parallelism, usable_cores

    cores = usable_cores()
    assert plan_parallelism("cpu", 0, 3) == (min(cores, 6), max(1, cores // min(cores, 6)), "cpu")
    assert plan_parallelism("cpu", 1, 3) == (1, cores, "cpu")


def _instant_result(job: Job) -> dict:
    """What `execute` returns for `job`, without training (the scheduling tests' stand-in)."""
    return {
        "kind": job.kind,
        "fraction": job.fraction,
        "label": job.label,
        "seconds": 0.0,
        "cosine": None,
        "metrics": {"acc1": 1.0, "cls_acc1": 1.0},
    }


def test_a_free_worker_takes_the_longest_waiting_run_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Teachers, then distilled students as their teacher is done, then label-only ones: short runs fill the end.
    from deit.demo import runs as demo_runs

    order: list[str] = []

    def fake_execute(job: Job, threads: int | None = None) -> dict:
        order.append(f"{job.kind}{job.fraction:g}")
        return _instant_result(job)

    monkeypatch.setattr(demo_runs, "execute", fake_execute)
    settings = DemoSettings(
        output_dir="out",
        seeds=1,
        sizes=(0.25, 1.0),
        full_size_kinds=STUDENT_KINDS,
        headline_data_set="DIGITS",
        headline_size=0.25,
        headline_seeds=1,
    )
    first, distilled, total = plan_runs(settings)
    teachers, students = demo_runs.run_jobs(first, distilled, total=total, jobs=1, threads=None)
    assert order == ["teacher0.25", "teacher1", "soft0.25", "soft1", "hard1", "none0.25", "none1", "two_cls_tokens1"]
    assert sorted(teachers) == [("DIGITS", 0.25), ("DIGITS", 1.0)] and len(students) == total - 2


def test_a_teachers_first_student_runs_alone_while_it_computes_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers: when the teacher is done, one worker takes its first soft student (which builds the table);
    # the other takes a label-only run instead of waiting on the table's lock; the second soft student follows.
    from deit.demo import runs as demo_runs

    events: list[str] = []

    class _Recorder:
        """Stands in for the process pool: runs each job at submission and records the order."""

        def __init__(self, **_: object) -> None:
            pass

        def submit(self, fn, job, threads):  # noqa: ANN001, ANN201
            from concurrent.futures import Future

            future: Future = Future()
            name = f"{job.kind}{job.seed}"
            events.append(name)
            future.set_result(_instant_result(job))
            return future

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            """Nothing to stop."""

    monkeypatch.setattr(demo_runs, "ProcessPoolExecutor", _Recorder)
    settings = DemoSettings(output_dir="out", seeds=2, sizes=(1.0,), headline_size=1.0, headline_seeds=2)
    first, distilled, total = plan_runs(settings)
    demo_runs.run_jobs(first, distilled, total=total, jobs=2, threads=None)
    # after the teacher the two workers take its first soft student and a label-only run (without the hold:
    # soft0 and soft1 together, one of them idle on the table's lock); soft1 follows when soft0 is done
    assert events == ["teacher0", "none0", "soft0", "none1", "soft1"]


def test_headline_interval_and_gap_closed_follow_their_formulas() -> None:
    from scipy.stats import t

    sizes = [_size(0.05, 72, {"none": [0.80, 0.84, 0.82, 0.86], "soft": [0.86, 0.88, 0.85, 0.91]})]
    headline = demo_report.headline(sizes, 0.05, "soft")
    gains = [6.0, 4.0, 3.0, 5.0]  # points
    half = t.ppf(0.975, 3) * statistics.stdev(gains) / 2
    assert headline["interval"] == pytest.approx([4.5 - half, 4.5 + half])
    # the teacher (97.5%) minus each plain seed: 17.5, 13.5, 15.5, 11.5 points; closed 6/17.5, 4/13.5, ...
    assert headline["gap_closed_per_seed"] == pytest.approx([6 / 17.5, 4 / 13.5, 3 / 15.5, 5 / 11.5])
    assert headline["gap_closed"] == pytest.approx(statistics.fmean([6 / 17.5, 4 / 13.5, 3 / 15.5, 5 / 11.5]))
    assert headline["teacher"] == pytest.approx(0.975) and headline["data_set"] == "DIGITS"
    sentence = demo_report.verdict(headline)
    assert sentence.startswith("Soft distillation beat no distillation at 5% of the training set (72 images)")
    assert f"95% interval [{4.5 - half:+.1f}, {4.5 + half:+.1f}]" in sentence and "closed 32% of" in sentence
    # a plain seed as good as its teacher has no gap to close: left out of the mean, None in the list
    level = [_size(0.5, 718, {"none": [0.975, 0.90], "soft": [0.98, 0.95]})]
    closed = demo_report.headline(level, 0.5, "soft")
    assert closed["gap_closed_per_seed"][0] is None and closed["gap_closed"] == pytest.approx(0.05 / 0.075)


def test_every_seed_better_is_not_enough_when_the_interval_includes_zero() -> None:
    sizes = [_size(0.25, 359, {"none": [0.80, 0.90], "soft": [0.81, 0.95]})]
    sentence = demo_report.verdict(demo_report.headline(sizes, 0.25, "soft"))
    assert sentence.startswith("Not resolved") and "better on 2 of 2 seeds; the interval includes zero" in sentence


def test_the_curve_and_where_the_teacher_helps_come_from_the_numbers() -> None:
    sizes = [
        _size(0.05, 72, {"none": [0.80, 0.82, 0.81], "soft": [0.85, 0.86, 0.86]}),
        _size(0.25, 359, {"none": [0.95, 0.96, 0.94], "soft": [0.96, 0.95, 0.94]}),
        _size(1.0, 1437, {"none": [0.97, 0.98, 0.97], "soft": [0.92, 0.93, 0.92]}),
    ]
    points = demo_findings.curve(sizes)
    assert points[0] == {
        "fraction": 0.05,
        "images": 72,
        "teacher": 97.5,
        "none": [80.0, 82.0, 81.0],
        "soft": [85.0, 86.0, 86.0],
    }
    sentence = demo_findings.teacher_help_sentence(sizes)
    assert sentence.startswith("On DIGITS, soft distillation helped at 5% (+4.7")
    assert "made no difference the seeds could resolve at 25% (+0.0" in sentence and "hurt at 100% (-5.0" in sentence
    # judged as the verdict is: a size whose interval one seed decides is not "helped"
    shaky = [_size(0.03, 43, {"none": [0.70] * 5, "soft": [0.705, 0.705, 0.705, 0.705, 0.73]})]
    assert "could resolve at 3% (+1.0, 95% interval" in demo_findings.teacher_help_sentence(shaky)
    assert "; seed 4 decides it)" in demo_findings.teacher_help_sentence(shaky)


def _with_curve(size: dict, kind: str, curves: list[list[float]]) -> dict:
    """`size` whose `kind` runs had these fused top-1 curves (fractions, one point per evaluation)."""
    size["students"][kind]["curve"] = demo_report.mean_curve(
        [[{"epoch": 1 + i, "fused": v, "cls": v, "dist": None} for i, v in enumerate(curve)] for curve in curves]
    )
    return size


def test_training_check_finds_stalls_and_measures_the_last_quarter() -> None:
    size = _size(1.0, 1437, {"none": [0.95, 0.96, 0.90], "soft": [0.96, 0.965, 0.955]})
    size = _with_curve(size, "none", [[0.5, 0.9, 0.93, 0.95], [0.5, 0.9, 0.94, 0.96]])
    # the far seed's own curve: still climbing in its last quarter (a stall), or flat (a converged outlier)
    far = size["students"]["none"]["per_seed"][2]
    far["last_quarter_change"] = demo_findings.last_quarter_change(
        [{"epoch": 1 + i, "fused": v} for i, v in enumerate([0.3, 0.5, 0.7, 0.9])]
    )
    check = demo_findings.training_check([size])
    assert check["stalls"] == [
        {
            "data_set": "DIGITS",
            "fraction": 1.0,
            "kind": "none",
            "seed": 2,
            "points_from_median": pytest.approx(-5.0),
            "own_last_quarter_change": pytest.approx(20.0),
        }
    ]
    assert "none 100% seed 2 (-5.0, its last quarter moved +20.0: still training)" in check["sentence"]
    far["last_quarter_change"] = 0.4
    flat = demo_findings.training_check([size])
    assert "none 100% seed 2 (-5.0, flat over its last quarter)" in flat["sentence"]
    row = next(row for row in check["rows"] if row["kind"] == "none")
    # evaluations at epochs 1-4: the last quarter starts at the first at or past epoch 3 (mean 93.5 -> 95.5)
    assert row["last_quarter_change"] == pytest.approx(2.0)
    assert "1 run(s) more than 3 points from their kind's median: none 100% seed 2" in check["sentence"]
    assert "at most 2.0 points" in check["sentence"]
    calm = demo_findings.training_check([_size(1.0, 1437, {"none": [0.95, 0.96, 0.955]})])
    assert calm["stalls"] == [] and "no stalls" in calm["sentence"]
