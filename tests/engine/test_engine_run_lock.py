"""A run owns its --output_dir: one run at a time, no silent replacement, nothing written before it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, TINY_STUDENT, run_cli
from deit.engine.run_lock import LOCK_NAME, lock_run_folder

ONE_EPOCH = ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--no-model-ema"]


def _hold_lock_in_another_process(folder: Path) -> subprocess.Popen:
    code = (
        f"import sys, time; from deit.engine.run_lock import lock_run_folder; "
        f"lock = lock_run_folder({str(folder)!r}); print('locked', flush=True); time.sleep(600)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


@pytest.mark.slow
def test_a_second_process_on_a_held_folder_is_refused_until_the_holder_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    holder = _hold_lock_in_another_process(tmp_path)
    temporary = tmp_path / ".checkpoint.pth.abc123.tmp"  # the holder's checkpoint being written
    temporary.write_bytes(b"half written")
    try:
        code, _, err = run_cli([*ONE_EPOCH, "--output_dir", tmp_path], capsys)
        assert code == 2 and f"pid {holder.pid}" in err and "another deit run" in err
        assert temporary.exists()  # the refused run cleaned nothing
        assert not (tmp_path / "log.txt").exists() and not (tmp_path / "config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without cleaning up: its lock went with it, and its stale temporary is removed.
    code, _, err = run_cli([*ONE_EPOCH, "--output_dir", tmp_path], capsys)
    assert code == 0, err
    assert not temporary.exists() and (tmp_path / "checkpoint.pth").is_file()
    lock_run_folder(tmp_path).release()  # released at the end of the run


@pytest.mark.slow
def test_a_fresh_run_never_replaces_a_finished_runs_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli([*ONE_EPOCH, "--output_dir", tmp_path], capsys)[0] == 0
    saved = (tmp_path / "checkpoint.pth").read_bytes()
    code, _, err = run_cli([*ONE_EPOCH, "--output_dir", tmp_path], capsys)
    assert code == 2 and "--resume auto" in err and "--overwrite-output" in err
    assert (tmp_path / "checkpoint.pth").read_bytes() == saved
    assert run_cli([*ONE_EPOCH, "--output_dir", tmp_path, "--overwrite-output", "--seed", "1"], capsys)[0] == 0
    assert (tmp_path / "checkpoint.pth").read_bytes() != saved


def test_refused_and_eval_runs_leave_the_folders_config_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "config.yaml").write_text("the finished run's settings\n")
    assert run_cli([*ONE_EPOCH, "--output_dir", tmp_path, "--drop-path", "1.0"], capsys)[0] == 2
    with pytest.warns(UserWarning, match="freshly initialised"):
        assert run_cli([*ONE_EPOCH, "--output_dir", tmp_path, "--eval"], capsys)[0] == 0
    assert (tmp_path / "config.yaml").read_text() == "the finished run's settings\n"
    assert (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_free_after_a_failed_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    started = time.monotonic()
    assert run_cli([*ONE_EPOCH, "--output_dir", tmp_path, "--finetune", tmp_path / "missing.pth"], capsys)[0] == 2
    lock_run_folder(tmp_path).release()
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("resume", [["--resume", "auto"], []])
def test_a_best_checkpoint_the_run_did_not_write_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture, resume: list[str]
) -> None:
    best = tmp_path / "best_checkpoint.pth"
    best.write_bytes(b"an earlier run's best weights")
    code, out, err = run_cli([*ONE_EPOCH, "--output_dir", tmp_path, *resume], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "starting from scratch" not in out
    assert "holds a best_checkpoint.pth but no checkpoint.pth" in err and f"--resume {best}" in err
    assert best.read_bytes() == b"an earlier run's best weights" and not (tmp_path / "log.txt").exists()


def test_a_second_demo_into_a_held_folder_is_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deit.demo import experiment
    from deit.demo.experiment import DemoSettings, run_demo
    from deit.errors import DeitError

    monkeypatch.setattr(experiment, "_run_demo", lambda *a: pytest.fail("the demo ran into a held folder"))
    holder = lock_run_folder(tmp_path)  # flock: another open of the file conflicts, even in this process
    try:
        with pytest.raises(DeitError, match=f"another deit run \\(pid {os.getpid()}\\) is using this folder"):
            run_demo(DemoSettings.quick(output_dir=str(tmp_path)))
    finally:
        holder.release()
    monkeypatch.setattr(experiment, "_run_demo", lambda settings, command: {"ran": True})
    assert run_demo(DemoSettings.quick(output_dir=str(tmp_path))) == {"ran": True}  # the holder gone: it runs
    lock_run_folder(tmp_path).release()  # and released its lock
