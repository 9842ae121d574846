"""Real processes: kill -9 and SIGINT in the middle of a run, and a 2-process torchrun (gloo, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, TINY_STUDENT, log_rows, run_cli
from deit.io import load_torch_file

LONGER_EPOCHS = [a if a != "3" else "12" for a in FAST]  # 12 steps per epoch: time to land inside one


def spawn(argv: list, *, module: list[str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, *(module or ["-m", "deit"]), *[str(a) for a in argv]]
    # SIGINT back to its default in the child: a test run started in the background (`make test &`) inherits an
    # ignored SIGINT, and Python then installs no KeyboardInterrupt handler, so Ctrl-C could never be tested.
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_first_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / "checkpoint.pth").exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint in time")
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    assert process.poll() is None, "the run finished before it could be interrupted"


@pytest.mark.slow
def test_kill_9_during_an_epoch_then_resume_auto_completes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 12 epochs: DIGITS trains from memory now, so a short run could finish between its first checkpoint and
    # the signal (it did with 4)
    epochs = 12
    argv = ["train", *TINY_STUDENT, *LONGER_EPOCHS, "--epochs", str(epochs), "--output_dir", tmp_path]
    process = spawn(argv)
    wait_for_first_checkpoint(process, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    survived = load_torch_file(tmp_path / "checkpoint.pth")["epoch"]  # loadable: the write was atomic
    assert survived < epochs - 1
    code, out, _ = run_cli([*argv, "--resume", "auto"], capsys)
    assert code == 0, out
    assert load_torch_file(tmp_path / "checkpoint.pth")["epoch"] == epochs - 1
    assert [row["epoch"] for row in log_rows(tmp_path)] == list(range(epochs))


@pytest.mark.slow
def test_sigint_saves_the_last_completed_epoch_and_exits_130(tmp_path: Path) -> None:
    # 20 epochs: far more than the run can finish between its first checkpoint and the signal
    process = spawn(["train", *TINY_STUDENT, *LONGER_EPOCHS, "--epochs", "20", "--output_dir", tmp_path])
    wait_for_first_checkpoint(process, tmp_path)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted in epoch" in out and "deit: interrupted" in err
    epoch = load_torch_file(tmp_path / "checkpoint.pth")["epoch"]
    assert [row["epoch"] for row in log_rows(tmp_path)] == list(range(epoch + 1))


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(tmp_path: Path) -> None:
    # --standalone: the launcher picks its own free rendezvous port (no race with a port chosen here).
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "deit"]
    process = spawn(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--dist-eval", "--output_dir", tmp_path], module=launcher
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert out.count("2 process(es)") == 1  # only rank 0 speaks
    checkpoint = load_torch_file(tmp_path / "checkpoint.pth")
    assert len(checkpoint["rng"]["ranks"]) == 2 and checkpoint["args"]["batch_size"] == 16
    row = log_rows(tmp_path)[0]
    assert row["test_num_images"] == 360 and row["train_steps"] == 3


# Runs `deit train` with a torch.save that, on its second call (epoch 2's checkpoint), writes half a file,
# announces itself and hangs: the test kills the process right there.
HANGING_SAVE = """
import sys, time, pathlib, torch
from deit.cli import main
real_save, calls = torch.save, []
def save(obj, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:
        pathlib.Path(path).write_bytes(b"PK half a checkpoint")
        pathlib.Path(sys.argv[1]).write_text(str(path))
        time.sleep(600)
    return real_save(obj, path, *args, **kwargs)
torch.save = save
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_kill_9_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "saving"
    argv = ["train", *TINY_STUDENT, *FAST, "--epochs", "2", "--no-model-ema", "--output_dir", run_dir]
    process = spawn([marker, *argv], module=["-c", HANGING_SAVE])
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the second save never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert Path(marker.read_text()).exists()  # the half-written temporary is still there ...
    assert load_torch_file(run_dir / "checkpoint.pth")["epoch"] == 0  # ... and the checkpoint is whole
    code, out, _ = run_cli([*argv, "--resume", "auto"], capsys)
    assert code == 0, out
    assert load_torch_file(run_dir / "checkpoint.pth")["epoch"] == 1
    assert not list(run_dir.glob(".checkpoint.pth.*.tmp"))  # the resumed run swept it away


@pytest.mark.slow
def test_a_distilled_student_trained_with_none_warns_in_one_line() -> None:
    process = spawn(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--no-model-ema"])
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "deit: warning: --distillation-type none: the distillation head of "
        "deit_tiny_distilled_patch16_224 receives no training signal"
    )
    assert "'labels'" in lines[0] and "epoch 1/1" in out
