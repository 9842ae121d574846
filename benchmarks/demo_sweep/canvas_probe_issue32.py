"""Issue 32, the DIGITS-CANVAS probes of session 28: is the teacher's gain on the canvas there at convergence?

Runs given as JSON specs: `PYTHONPATH=src python benchmarks/demo_sweep/canvas_probe_issue32.py '<specs>'`, each
`{"name", "kind": "teacher" | "none" | "soft", "seed", "epochs", "teacher_path", "fraction"}` on DIGITS-CANVAS (at
100% unless `fraction` says otherwise), the
demo's configurations (the teacher: round 4's recipe, 32 epochs, lr 3e-3, mixup 0.8). Two at a time, one thread
each; one JSON line per run, with its validation curve, is appended to runs/issue32/canvas_probes.jsonl.
"""

import json
import sys
from multiprocessing import get_context
from pathlib import Path

from sweep_runs import record, train_fields

ROOT = Path("runs/issue32/canvas_probes")
TEACHER = {"teacher_epochs": 32, "teacher_lr": 3e-3, "teacher_mixup": 0.8}


def probe(spec: dict) -> dict:
    """One run of the spec; its last and best top-1 and the curve from its log."""
    from dataclasses import asdict

    from deit.demo.experiment import DemoSettings, student_config, teacher_config

    settings = DemoSettings(output_dir=str(ROOT), **TEACHER)
    fraction = spec.get("fraction", 1.0)
    if spec["kind"] == "teacher":
        base = teacher_config(settings, fraction, "DIGITS-CANVAS")
    else:
        base = student_config(settings, spec["kind"], spec["seed"], spec.get("teacher_path"), fraction, "DIGITS-CANVAS")
    changes = {"epochs": spec["epochs"]} if "epochs" in spec else {}
    out = ROOT / spec["name"]
    metrics, seconds = train_fields({**asdict(base), **changes}, out)
    rows = [json.loads(line) for line in open(out / "log.txt") if line.startswith("{")]
    return {
        "name": spec["name"],
        "acc1": round(metrics["acc1"], 2),
        "best": round(metrics["best_acc1"], 2),
        "train_loss": round(metrics["train_loss"], 3),
        "seconds": round(seconds, 1),
        "curve": [(row["epoch"], round(row["test_acc1"], 2)) for row in rows if "test_acc1" in row],
    }


if __name__ == "__main__":
    with get_context("spawn").Pool(2) as pool:
        for row in pool.imap_unordered(probe, json.loads(sys.argv[1])):
            record(row, ROOT.parent / "canvas_probes.jsonl")
