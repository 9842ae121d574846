"""Teacher labels across processes, in one 2-process torchrun (gloo, CPU): the label pass writes what one process
writes for `--world_size 2`, and a 2-process replay trains the weights of the 2-process run with the teacher
per step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from test_engine_processes import spawn

from conftest import FAST, TINY_STUDENT, run_cli

# Three `deit` commands in the same two processes: one launch instead of three (each start costs seconds). The
# group is joined once, before them (each command then uses it and leaves it): no gloo reconnection in between.
THREE_COMMANDS = """
import json, sys
import torch.distributed as dist
from deit.cli import main
dist.init_process_group("gloo")
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ranks_label_and_replay_exactly(tmp_path: Path, capsys, teacher_checkpoint) -> None:
    flags = [*TINY_STUDENT, *FAST, "--max-steps-per-epoch", "2", "--epochs", "2", "--lr", "0.01", "--unscale-lr"]
    flags += ["--distillation-type", "hard", "--teacher-model", "resnet10t"]
    flags = [str(flag) for flag in flags]
    teacher = ["--teacher-path", str(teacher_checkpoint)]
    one_process, two_processes = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(["teacher-labels", "--output", one_process, *flags, *teacher, "--world_size", "2"], capsys)
    assert code == 0, err
    commands = [
        ["teacher-labels", "--output", str(two_processes), *flags, *teacher],
        ["train", *flags, *teacher, "--seeded-stream", "--output_dir", str(tmp_path / "per_step")],
        ["train", *flags, "--teacher-labels", str(one_process), "--output_dir", str(tmp_path / "replayed")],
    ]
    script = tmp_path / "three_commands.py"
    script.write_text(THREE_COMMANDS)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    process = spawn([script, json.dumps(commands)], module=launcher[1:])
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "rank 0; resnet10t, not run per step" in out
    digests = [json.loads((folder / "manifest.json").read_text())["digests"] for folder in (one_process, two_processes)]
    assert digests[0] == digests[1] and set(digests[0]) == {"rank0", "rank1"}
    weights = [
        torch.load(tmp_path / run / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]
        for run in ("per_step", "replayed")
    ]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
