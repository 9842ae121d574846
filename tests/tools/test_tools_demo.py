"""`deit demo`: a real (tiny) run end to end, the run configurations, the summary statistics and the verdict."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from deit.cli import main
from deit.errors import DeitError
from deit.tools import demo_report
from deit.tools.demo import (DISTILLED_STUDENT, PLAIN_STUDENT, STUDENT_KINDS, DemoSettings, student_config,
                             teacher_config)
from deit.tools.demo_runs import Job, _PrefixedLines, execute

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_demo_writes_results_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The default CPU path: one spawned process per run, the distilled students after the teacher.
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "--jobs", "2", "--output-dir", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "[demo] 5/5 done" in printed and "Hard distillation" in printed

    results = json.loads((output / "results.json").read_text())
    assert 0.0 <= results["teacher"]["top1"] <= 1.0
    assert set(results["students"]) == set(STUDENT_KINDS)
    for kind, student in results["students"].items():
        assert 0.0 <= student["cls"] <= 1.0 and 0.0 <= student["fused"] <= 1.0
        assert len(student["per_seed"]) == 1 and student["fused_std"] is None  # one seed: no spread
        assert [point["epoch"] for point in student["curve"]] == [1, 2]
        run_dir = Path(student["per_seed"][0]["run_dir"])
        assert (run_dir / "checkpoint.pth").is_file() and (run_dir / "log.txt").is_file()
        if kind == "none":  # the plain architecture has one head: fused is its class head
            assert student["dist"] is None and student["cosine"] is None
            assert student["fused"] == student["cls"]
            assert student["model"] == PLAIN_STUDENT
        else:
            assert 0.0 <= student["dist"] <= 1.0
            assert -1.0 <= student["cosine"] <= 1.0
            assert student["model"] == DISTILLED_STUDENT
    assert results["students"]["hard"]["distillation_type"] == "hard"
    assert results["students"]["two_cls_tokens"]["distillation_type"] == "none"
    assert results["comparison"]["seeds"] == 1
    assert results["timings"]["training_seconds"] > 0 and results["machine"]["cores"] >= 1

    table = (output / "results.md").read_text()
    assert "| teacher: ResNet-18, quarter width |" in table
    for kind in STUDENT_KINDS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {demo_report.STUDENT_TITLES[kind]} |"))
        assert row.count("|") == 6
    assert (output / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_student_configurations_follow_the_paper() -> None:
    settings = DemoSettings(output_dir="out")
    configs = {kind: student_config(settings, kind, 1, teacher_path="t.pth") for kind in STUDENT_KINDS}
    assert configs["none"].model == PLAIN_STUDENT and configs["none"].distillation_type == "none"
    assert configs["two_cls_tokens"].model == DISTILLED_STUDENT
    assert configs["two_cls_tokens"].distillation_type == "none" and not configs["two_cls_tokens"].teacher_path
    assert configs["soft"].distillation_type == "soft" and configs["hard"].teacher_path == "t.pth"
    for config in configs.values():
        # the same student dims for every row, digits are never mirrored, one run directory per kind and seed
        assert config.model_kwargs == settings.student_kwargs
        assert config.hflip == 0.0 and config.seed == 1 and config.epochs == settings.epochs
    assert len({config.output_dir for config in configs.values()}) == len(STUDENT_KINDS)
    teacher = teacher_config(settings)
    assert teacher.distillation_type == "none" and teacher.epochs == settings.teacher_epochs
    with pytest.raises(DeitError, match="teacher"):
        student_config(settings, "hard", 0)
    with pytest.raises(DeitError, match="unknown student kind"):
        student_config(settings, "medium", 0)


def test_a_failed_run_names_itself(tmp_path: Path) -> None:
    settings = DemoSettings.quick(output_dir=str(tmp_path))
    job = Job("hard", 2, student_config(settings, "hard", 2, teacher_path=str(tmp_path / "missing.pth")))
    with pytest.raises(DeitError, match="demo run 'hard seed 2' failed.*--teacher-path"):
        execute(job)


@pytest.mark.parametrize("flags, message", [(["--seeds", "0"], "--seeds 0"), (["--epochs", "0"], "--epochs 0"),
                                            (["--jobs", "-1"], "--jobs -1")])
def test_bad_flags_are_one_line_errors(flags: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *flags, "--output-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def _student(kind: str, fused: list[float], cosine: float | None = 0.9) -> dict:
    runs = [{"seed": seed, "model": "m", "distillation_type": "none", "cosine": cosine, "seconds": 1.0,
             "run_dir": "r", "metrics": {"acc1": 100 * value, "cls_acc1": 100 * value,
                                         **({} if kind == "none" else {"dist_acc1": 100 * value})},
             "curve": [{"epoch": 1, "fused": value, "cls": value, "dist": None}]}
            for seed, value in enumerate(fused)]
    return demo_report.summarise_student(kind, runs)


def test_summary_uses_sample_std_and_pairs_seeds() -> None:
    none = _student("none", [0.90, 0.92, 0.94], cosine=None)
    hard = _student("hard", [0.93, 0.95, 0.93])
    assert none["fused"] == pytest.approx(0.92) and none["fused_std"] == pytest.approx(0.02)
    assert none["dist"] is None and none["cosine"] is None
    assert hard["curve"][0]["fused_min"] == pytest.approx(0.93)
    comparison = demo_report.paired_comparison({"none": none, "hard": hard})
    assert comparison["per_seed"] == pytest.approx({0: 0.03, 1: 0.03, 2: -0.01})
    assert comparison["wins"] == 2 and comparison["mean"] == pytest.approx(0.05 / 3)
    sentence = demo_report.verdict(comparison)
    assert sentence.startswith("Hard distillation beat no distillation, within the seed-to-seed spread")
    assert "+1.7 ± 2.3 points" in sentence and "better on 2 of 3 seeds" in sentence


def test_verdict_says_when_hard_distillation_loses() -> None:
    none = _student("none", [0.95, 0.96])
    hard = _student("hard", [0.90, 0.91])
    sentence = demo_report.verdict(demo_report.paired_comparison({"none": none, "hard": hard}))
    assert sentence.startswith("Hard distillation did not beat no distillation: fused top-1 -5.0 ± 0.0")
    assert demo_report.verdict(None).endswith("not measured in this run.")
    assert demo_report.mean_std([]) == (None, None) and demo_report.mean_std([0.5])[1] is None
    assert math.isclose(demo_report.mean_std([0.0, 1.0])[1], math.sqrt(0.5))


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


def test_one_job_runs_inline_and_restores_threads(tmp_path: Path) -> None:
    # The GPU / single-core path: runs one after another in this process, which must be left as it was found.
    import torch

    from deit.tools.demo import run_demo

    threads = torch.get_num_threads()
    settings = DemoSettings.quick(output_dir=str(tmp_path), jobs=1, epochs=1, max_steps_per_epoch=3)
    results = run_demo(settings)
    assert torch.get_num_threads() == threads
    assert results["config"]["jobs"] == 1
    assert [point["epoch"] for point in results["students"]["hard"]["curve"]] == [1]
    assert (tmp_path / "results.json").is_file()


def test_parallelism_plan() -> None:
    from deit.tools.demo_runs import plan_parallelism, usable_cores

    cores = usable_cores()
    assert plan_parallelism("cpu", 0, 3) == (min(cores, 6), max(1, cores // min(cores, 6)), "cpu")
    assert plan_parallelism("cpu", 1, 3) == (1, cores, "cpu")
