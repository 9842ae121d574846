"""Issue #22 rows (data and run files): each case built in a temporary folder and run as `deit ...`.

Prints one line per case: exit status, wall and CPU time, the child's peak RSS, and what it printed last.
Run it on a checkout (`PYTHONPATH=src python benchmarks/untrusted_data_rows.py [case ...]`) before and after a
change. Wall time depends on the machine's load (printed first); CPU time (user + system) much less. A child
is stopped by this script past its case's time limit or past 6 GB resident (so the label-1e9 case cannot take
the machine down): the line then says so.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

TINY = [
    "--model",
    "deit_tiny_patch16_224",
    "--input-size",
    "32",
    "--model-kwargs",
    '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
    "--batch-size",
    "4",
    "--epochs",
    "1",
    "--num_workers",
    "0",
    "--device",
    "cpu",
    "--log-format",
    "plain",
    "--no-model-ema",
    "--no-repeated-aug",
]
HF = ["--data-set", "HF", "--hf-image-column", "img", "--hf-label-column", "animal"]


def _png(seed: int, size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _folders(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    for split, count in (("train", per_class), ("val", 2)):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / f"{index}.png").write_bytes(_png(label * 100 + index))
    return root


def _hf(root: Path, train_labels: list[int], val_rows: int = 6, class_label: bool = False) -> Path:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    def split(labels: list[int], offset: int) -> datasets.Dataset:
        label_feature = datasets.ClassLabel(names=["a", "b", "c"]) if class_label else datasets.Value("int64")
        features = datasets.Features({"img": datasets.Image(), "animal": label_feature})
        return datasets.Dataset.from_dict(
            {"img": [{"bytes": _png(offset + i), "path": None} for i in range(len(labels))], "animal": labels},
            features=features,
        )

    datasets.DatasetDict(
        {"train": split(train_labels, 0), "validation": split([i % 3 for i in range(val_rows)], 100)}
    ).save_to_disk(str(root))
    return root


def _shards(root: Path) -> Path:
    """A 3-class shard folder packed from class folders (by the checkout under test)."""
    source = _folders(root / "src")
    _deit(["data", "pack", "--data-path", str(source), "--output", str(root / "wds")], timeout=120)
    return root / "wds"


def _edit_index(folder: Path, edit) -> None:
    index = json.loads((folder / "index.json").read_text())
    edit(index)
    (folder / "index.json").write_text(json.dumps(index))


def _deit(
    argv: list[str], *, timeout: float = 120, rss_cap_gb: float = 6.0, env: dict | None = None, code: str | None = None
) -> dict:
    """Run `python -m deit argv` (or `python -c code argv`), watching time and resident memory."""
    command = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "deit", *argv]
    started, cpu_before = time.perf_counter(), _children_cpu()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    stopped, peak, output = "", 0, []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))))
        except (OSError, StopIteration, ValueError):
            pass
        elapsed = time.perf_counter() - started
        if elapsed > timeout or peak > rss_cap_gb * 2**20:
            stopped = f"STOPPED by the script at {elapsed:.0f} s, RSS {peak / 2**20:.1f} GB"
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.05)
    wall = time.perf_counter() - started
    reader.join(timeout=5)
    lines = [line for line in "".join(output).splitlines() if line.strip()]
    return {
        "rc": process.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(_children_cpu() - cpu_before, 1),
        "peak_rss_mb": round(peak / 1024),
        "stopped": stopped,
        "traceback": any(line.startswith("Traceback") for line in lines),
        "last": lines[-1][:220] if lines else "",
        "lines": lines,
        "notes": [line[:160] for line in lines if re.search(r"skipping|skipped|train / ", line)][:3],
    }


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished children: comparable on a loaded machine, unlike wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def case_label_1e9(tmp: Path) -> dict:
    return _deit(["train", *TINY, *HF, "--data-path", str(_hf(tmp / "hf", [0, 1, 2, 10**9, 0, 1, 2, 0]))], timeout=150)


def case_label_minus_1(tmp: Path) -> dict:
    return _deit(["train", *TINY, *HF, "--data-path", str(_hf(tmp / "hf", [0, 1, 2, -1, 0, 1, 2, 0]))])


def case_empty_train_split(tmp: Path) -> dict:
    return _deit(["train", *TINY, *HF, "--data-path", str(_hf(tmp / "hf", []))])


def case_empty_val_split(tmp: Path) -> dict:
    return _deit(["train", *TINY, *HF, "--data-path", str(_hf(tmp / "hf", [0, 1, 2, 0, 1, 2, 0, 1], val_rows=0))])


def case_eval_empty_val_split(tmp: Path) -> dict:
    data = _hf(tmp / "hf", [0, 1, 2, 0, 1, 2, 0, 1], val_rows=6)
    _deit(["train", *TINY, *HF, "--data-path", str(data), "--output_dir", str(tmp / "run")])
    _hf(tmp / "hf0", [0, 1, 2, 0, 1, 2, 0, 1], val_rows=0)
    return _deit(
        [
            "eval",
            "--checkpoint",
            str(tmp / "run" / "checkpoint.pth"),
            "--data-set",
            "HF",
            "--data-path",
            str(tmp / "hf0"),
            "--num_workers",
            "0",
            "--device",
            "cpu",
        ]
    )


def case_index_parent_path(tmp: Path) -> dict:
    folder = _shards(tmp)
    _edit_index(
        folder,
        lambda index: index["splits"]["train"]["shards"].append(
            {"file": "../../../../../../../../etc/passwd", "count": 1}
        ),
    )
    return _deit(["train", *TINY, "--data-set", "WDS", "--data-path", str(folder)])


def case_index_absolute_path(tmp: Path) -> dict:
    folder = _shards(tmp)
    _edit_index(folder, lambda index: index["splits"]["train"]["shards"].append({"file": "/etc/passwd", "count": 1}))
    return _deit(["train", *TINY, "--data-set", "WDS", "--data-path", str(folder)])


def case_index_100x_count(tmp: Path) -> dict:
    folder = _shards(tmp)

    def inflate(index: dict) -> None:
        for shard in index["splits"]["train"]["shards"]:
            shard["count"] *= 100

    _edit_index(folder, inflate)
    return _deit(["train", *TINY, "--data-set", "WDS", "--data-path", str(folder), "--max-steps-per-epoch", "2"])


def case_index_negative_count(tmp: Path) -> dict:
    folder = _shards(tmp)
    _edit_index(folder, lambda index: index["splits"]["train"]["shards"][0].update(count=-5000))
    return _deit(["train", *TINY, "--data-set", "WDS", "--data-path", str(folder)])


def case_index_nested(tmp: Path) -> dict:
    folder = _shards(tmp)
    (folder / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    return _deit(["train", *TINY, "--data-set", "WDS", "--data-path", str(folder)])


def case_pack_into_input(tmp: Path) -> dict:
    source = _folders(tmp / "src")
    result = _deit(["data", "pack", "--data-path", str(source), "--output", str(source / "train" / "packed")])
    result["after"] = sorted(p.name for p in (source / "train").iterdir())
    return result


def case_pack_disk_full(tmp: Path) -> dict:
    source = _folders(tmp / "src", per_class=40)
    small = tmp / "small"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True, check=False
    ).returncode:
        return {
            "rc": None,
            "last": "cannot mount a small tmpfs here (needs root)",
            "wall_s": 0,
            "peak_rss_mb": 0,
            "stopped": "",
            "traceback": False,
        }
    try:
        result = _deit(
            ["data", "pack", "--data-path", str(source), "--output", str(small / "wds"), "--shard-size", "20"]
        )
        result["after"] = sorted(str(p.relative_to(small)) for p in small.rglob("*"))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True, check=False)
    return result


def case_train_subset_inf(tmp: Path) -> dict:
    return _deit(["train", *TINY, "--data-set", "DIGITS", "--train-subset", "inf"])


_KILL_AFTER_SAVE = """
import os, signal, sys
import deit.engine.run as run
real = run.save_checkpoint
def save_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after checkpoint.pth is in place
run.save_checkpoint = save_then_die
from deit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def case_kill_after_first_checkpoint(tmp: Path) -> dict:
    argv = [
        "train",
        *TINY,
        "--data-set",
        "DIGITS",
        "--train-subset",
        "0.05",
        "--output_dir",
        str(tmp / "run"),
        "--max-steps-per-epoch",
        "2",
    ]
    killed = _deit([*argv, "--epochs", "3"], code=_KILL_AFTER_SAVE)
    result = _deit([*argv, "--epochs", "3", "--resume", "auto"])
    rows = [json.loads(line)["epoch"] for line in (tmp / "run" / "log.txt").read_text().splitlines() if line.strip()]
    import torch

    saved = torch.load(tmp / "run" / "checkpoint.pth", weights_only=False)["epoch"]
    result["last"] = f"first run rc {killed['rc']}; after resume: log epochs {rows}, checkpoint epoch {saved}"
    return result


def _symlink_loop(tmp: Path) -> Path:
    source = _folders(tmp / "src")
    os.symlink("..", source / "train" / "c0" / "up")
    return source


def case_symlink_loop_train(tmp: Path) -> dict:
    return _deit(["train", *TINY, "--data-set", "IMAGEFOLDER", "--data-path", str(_symlink_loop(tmp))])


def case_symlink_loop_pack(tmp: Path) -> dict:
    source = _symlink_loop(tmp)
    result = _deit(["data", "pack", "--data-path", str(source), "--output", str(tmp / "wds")])
    if (tmp / "wds" / "index.json").is_file():
        index = json.loads((tmp / "wds" / "index.json").read_text())
        labels = []
        for shard in index["splits"]["train"]["shards"]:
            with tarfile.open(tmp / "wds" / shard["file"]) as archive:
                labels += [int(archive.extractfile(m).read()) for m in archive if m.name.endswith(".cls")]
        result["last"] += f" | train samples {len(labels)} (c0: {labels.count(0)}) from 24 images"
    return result


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.pth")
    return tmp / "pipe.pth"


def case_fifo_predict(tmp: Path) -> dict:
    (tmp / "x.png").write_bytes(_png(1))
    return _deit(["predict", "--checkpoint", str(_fifo(tmp)), str(tmp / "x.png")], timeout=45)


def case_fifo_eval(tmp: Path) -> dict:
    return _deit(["eval", "--checkpoint", str(_fifo(tmp)), "--data-set", "DIGITS"], timeout=45)


def case_fifo_export(tmp: Path) -> dict:
    return _deit(
        [
            "export",
            "--checkpoint",
            str(_fifo(tmp)),
            "--format",
            "safetensors",
            "--output",
            str(tmp / "out.safetensors"),
        ],
        timeout=45,
    )


def case_fifo_finetune(tmp: Path) -> dict:
    return _deit(["train", *TINY, "--data-set", "DIGITS", "--finetune", str(_fifo(tmp))], timeout=45)


def case_fifo_resume(tmp: Path) -> dict:
    return _deit(["train", *TINY, "--data-set", "DIGITS", "--resume", str(_fifo(tmp))], timeout=45)


def case_fifo_teacher(tmp: Path) -> dict:
    return _deit(
        [
            "train",
            *TINY,
            "--data-set",
            "DIGITS",
            "--distillation-type",
            "hard",
            "--teacher-model",
            "resnet18",
            "--teacher-path",
            str(_fifo(tmp)),
        ],
        timeout=45,
    )


CASES = {name[len("case_") :]: function for name, function in globals().items() if name.startswith("case_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", choices=[*CASES, []], help="default: all")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    for name in args.cases or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            result = CASES[name](Path(tmp))
        extra = f" | after: {result['after']}" if "after" in result else ""
        extra += "".join(f" | {note}" for note in result.get("notes", []))
        print(
            f"{name}: rc {result['rc']}, {result['wall_s']} s wall, {result.get('cpu_s', 0)} s CPU, "
            f"peak RSS {result['peak_rss_mb']} MB"
            f"{', TRACEBACK' if result['traceback'] else ''}{', ' + result['stopped'] if result['stopped'] else ''}"
            f" | {result['last']}{extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
