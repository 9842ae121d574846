"""`deit submit`: the official submitit job shape on SLURM, and a real 2-task job on submitit's local executor that
is signalled as SLURM signals a timeout, requeued, and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

import deit
from conftest import TINY_KWARGS, log_rows, run_cli
from deit.engine import make_config
from deit.engine.submit import SubmitOptions, make_executor, submit_training
from deit.io import load_torch_file


@pytest.fixture
def fake_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `srun` on PATH, so submitit builds its SLURM executor (nothing is submitted)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_the_slurm_job_has_the_official_shape(tmp_path: Path, fake_srun: None) -> None:
    options = SubmitOptions(ngpus=4, nodes=3, timeout=60, partition="dev", use_volta32=True, comment="deadline")
    executor = make_executor(options, cluster="slurm", job_dir=str(tmp_path / "%j"))
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in [
        "--nodes=3",
        "--ntasks-per-node=4",  # one task per GPU
        "--gpus-per-node=4",
        "--cpus-per-task=10",
        "--mem=160GB",
        "--time=60",
        "--signal=USR2@120",  # the warning before the end that lets the job checkpoint and requeue
        "--partition=dev",
        "--constraint=volta32gb",
        "--comment=deadline",
        "--job-name=deit",
    ]:
        assert f"#SBATCH {line}\n" in script, line
    assert executor._executor.max_num_timeout == 30


def test_without_slurm_auto_is_one_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    code, _, err = run_cli(["submit", "--model", "deit_tiny_patch16_224"], capsys)
    assert code == 2 and "no SLURM here (srun not found); --cluster local" in err


def test_local_refuses_several_nodes_and_bad_flags_before_submitting(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(["submit", "--cluster", "local", "--job_dir", tmp_path], capsys)
    assert code == 2 and "--nodes 2: --cluster local runs on this one machine" in err
    code, _, err = run_cli(["submit", "--cluster", "local", "--nodes", "1", "--model", "deit_tiny_patch16_22"], capsys)
    assert code == 2 and "did you mean deit_tiny_patch16_224" in err
    code, _, err = run_cli(["submit", "--ngpus", "0"], capsys)
    assert code == 2 and "--ngpus 0: must be in [1, 1024]" in err
    assert not any(tmp_path.iterdir())  # nothing submitted


def _task_pids(controller: int) -> list[int]:
    children = Path(f"/proc/{controller}/task/{controller}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"waited {seconds:.0f}s for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the tasks through /proc (Linux)")
def test_two_tasks_checkpoint_then_requeue_and_resume_after_a_timeout_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # The tasks are new processes: they import this deit, one thread each (two shared cores).
    monkeypatch.setenv("PYTHONPATH", str(Path(deit.__file__).parents[1]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = make_config(
        model="deit_tiny_patch16_224",
        model_kwargs=json.loads(TINY_KWARGS),
        input_size=32,
        epochs=2,
        batch_size=16,
        num_workers=0,
        device="cpu",
        warmup_epochs=0,
        unscale_lr=True,
        aa="none",
        max_steps_per_epoch=4,
        log_format="plain",
        log_interval=0,
    )
    job, output_dir = submit_training(
        config, SubmitOptions(ngpus=2, nodes=1, timeout=10, job_dir=str(tmp_path / "jobs" / "%j"), cluster="local")
    )
    run_dir = Path(output_dir.replace("%j", str(job.job_id)))
    assert run_dir.parent == tmp_path / "jobs"
    try:
        _wait_for(lambda: (run_dir / "checkpoint.pth").is_file(), 400, "the first checkpoint")  # a loaded CI is slow
        first = load_torch_file(run_dir / "checkpoint.pth")["epoch"]
        tasks = _task_pids(job._process.pid)
        assert len(tasks) == 2
        for pid in tasks:  # what SLURM does --signal seconds before the time limit
            os.kill(pid, signal.SIGUSR2)
        result = job.results()[0]  # task 0's, of the requeued job, once it has finished
    finally:
        if job._process is not None and job._process.poll() is None:
            job.cancel()
    log = (run_dir / f"{job.job_id}_0_log.out").read_text()
    assert "requeued; the next start resumes from auto" in log
    resumed = [line for line in log.splitlines() if line.startswith("resumed from epoch")]
    assert resumed and int(resumed[0].split()[3]) >= first + 1  # continued from a checkpoint, not from scratch
    assert log.count("2 process(es)") == 2  # two starts, each a two-task process group
    other = (run_dir / f"{job.job_id}_1_log.out").read_text()
    assert "task 1 stops; task 0 requeues the job" in other  # the requeue, not an error
    assert "Traceback" not in (run_dir / f"{job.job_id}_1_log.err").read_text()
    final = load_torch_file(run_dir / "checkpoint.pth")
    assert final["epoch"] == 1 and [row["epoch"] for row in log_rows(run_dir)] == [0, 1]
    assert result["epoch"] == 1 and torch.isfinite(torch.tensor(result["acc1"]))


def test_the_command_prints_the_job_its_folder_logs_and_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's wiring, with an executor that records the submission instead of starting processes."""
    from types import SimpleNamespace

    import deit.engine.submit as submit_module

    submitted = []

    class Recorder:
        def submit(self, trainer):
            submitted.append(trainer)
            return SimpleNamespace(job_id="4242", paths=SimpleNamespace(folder=tmp_path / "jobs" / "4242"))

    monkeypatch.setattr(submit_module, "make_executor", lambda options, **kwargs: Recorder())
    argv = ["submit", "--cluster", "local", "--nodes", "1", "--job_dir", tmp_path / "jobs" / "%j", "--epochs", "3"]
    code, out, err = run_cli([*argv, "--model", "deit_tiny_patch16_224", "--resume", "auto"], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "submitted job 4242",
        f"job folder: {tmp_path / 'jobs' / '4242'}",
        f"logs: {tmp_path / 'jobs' / '4242' / '4242_0_log.out'} (task 0; task k: 4242_k_log.out / .err)",
        f"checkpoints and logs of the run: {tmp_path / 'jobs' / '4242'} (requeued after a timeout or preemption: "
        "--resume auto there)",
    ]
    (trainer,) = submitted
    assert trainer.config.output_dir == str(tmp_path / "jobs" / "%j") and trainer.config.epochs == 3


@pytest.mark.parametrize(("rank", "signalled", "quiet"), [("1", True, True), ("0", True, False), ("1", False, False)])
def test_only_a_signalled_task_other_than_0_stops_quietly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    rank: str,
    signalled: bool,
    quiet: bool,
) -> None:
    """When task 0 leaves to requeue, the others' next collective fails: that is the requeue, not an error."""
    import deit.engine.run as run_module
    import deit.engine.submit as submit_module
    from deit.engine.submit import SubmititTrainer

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "7")
    monkeypatch.setattr(submit_module, "export_process_group_env", lambda: os.environ.update(RANK=rank))
    monkeypatch.setenv("RANK", rank)
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: None)  # submitit's handler stands here
    try:

        def train(config):
            if signalled:
                os.kill(os.getpid(), signal.SIGUSR2)
            raise RuntimeError("Connection closed by peer")

        monkeypatch.setattr(run_module, "train", train)
        trainer = SubmititTrainer(make_config(output_dir=str(tmp_path / "%j")))
        if quiet:
            assert trainer() is None
            assert "deit submit: task 1 stops; task 0 requeues the job" in capsys.readouterr().out
        else:
            with pytest.raises(RuntimeError, match="Connection closed"):
                trainer()
    finally:
        signal.signal(signal.SIGUSR2, previous)
