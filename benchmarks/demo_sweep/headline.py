"""The headline check behind `deit demo` (issue 19): candidate recipes at 25%, on seeds no earlier run has used.

Run from the repository root: `PYTHONPATH=src python benchmarks/demo_sweep/headline.py [candidate ...]`.
Each candidate is one `deit demo --sizes 0.25` (its own teacher, `none` and `soft` on every seed) with a few
settings changed; its `results.json` goes to runs/headline/<candidate>/ and a one-line summary (per-seed fused
top-1, the paired gains, wins) is appended to runs/headline/headline.jsonl.

The protocol (candidates, seeds, adoption rule) was fixed in this file and committed before any of its runs;
docs/demo.md reports every run.
"""

import json
import sys
import time
from pathlib import Path

#: Selection seeds: 100-105 (no run before this sweep used them). Confirmation: 200-205 and the default 0-2.
FIRST_SEED = 100
SEEDS = 6
ROOT = Path("runs/headline")

#: Candidates, in the order they are run. Only the distillation side changes in A-D ("none" is the same run in
#: each, so the baseline cannot be tuned into losing); E trains every student longer with a teacher twice as long.
CANDIDATES = {
    # A: the default, as `make demo` runs it: the reference on the fresh seeds.
    "A_default": {},
    # B: the students end undertrained (train loss 0.72-0.79 against a ~0.50 floor at smoothing 0.1): weigh the
    # teacher's targets, which carry more per image than the label, more.
    "B_alpha0.9": {"soft_alpha": 0.9},
    # C, D: a softer teacher (more of its ranking of the wrong classes), at both weights.
    "C_tau6": {"distillation_tau": 6.0},
    "D_alpha0.9_tau6": {"soft_alpha": 0.9, "distillation_tau": 6.0},
    # E: near convergence (40 epochs: none 92-96% in run "H, 40 epochs"), where soft approached its 97% teacher:
    # a 99% teacher (16 epochs) raises that ceiling. Adopted only if a fresh-clone `make demo` stays <= 8 min.
    "E_epochs40_teacher16": {"epochs": 40, "teacher_epochs": 16},
}
#: Adoption rule: among candidates better on 6 of 6 selection seeds, the largest mean gain; none: keep A.
#: The adopted recipe is then run on seeds 200-205 and as the default (seeds 0-2), and all of it is reported.


def run(name: str, first_seed: int = FIRST_SEED) -> dict:
    """One candidate: `deit demo --sizes 0.25 --seeds 6 --first-seed <first_seed>` with its changes."""
    from deit.demo.experiment import DemoSettings, run_demo

    changes = CANDIDATES[name]
    out = ROOT / f"{name}_s{first_seed}"
    settings = DemoSettings(output_dir=str(out), sizes=(0.25,), seeds=SEEDS, first_seed=first_seed, **changes)
    started = time.time()
    results = run_demo(settings, command=f"benchmarks/demo_sweep/headline.py {name} (seeds {first_seed}+)")
    size = results["sizes"][0]
    headline = results["headline"]
    line = {
        "candidate": name,
        "changes": changes,
        "first_seed": first_seed,
        "teacher": round(100 * size["teacher"]["top1"], 1),
        "none": [round(100 * row["fused"], 1) for row in size["students"]["none"]["per_seed"]],
        "soft": [round(100 * row["fused"], 1) for row in size["students"]["soft"]["per_seed"]],
        "gains": [round(100 * gain, 1) for gain in headline["per_seed_gain"]],
        "gain": round(100 * headline["gain"], 2),
        "wins": headline["wins"],
        "seeds": headline["seeds"],
        "wall_s": round(time.time() - started, 1),
        "training_s": results["timings"]["training_seconds"],
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "headline.jsonl", "a") as log:
        log.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    args = sys.argv[1:]
    first = FIRST_SEED
    if args and args[0].startswith("--first-seed="):
        first = int(args.pop(0).split("=", 1)[1])
    for candidate in args or list(CANDIDATES):
        run(candidate, first)
