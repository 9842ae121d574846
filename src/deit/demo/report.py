"""What `deit demo` writes: means and spreads over seeds per size and kind, the paired gains over no distillation,
the verdict, `results.json`, `results.md`, `data_efficiency.png` (the headline picture) and `curves.png`.

Accuracies are fractions in [0, 1] in the JSON and percentages in the Markdown tables. The spread is the sample
standard deviation over seeds (null with a single seed). No run is selected on the validation set: every number
is the last epoch's. Gains are paired by seed: the same seed trains every kind at a size.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from deit.demo.findings import (
    gap_closed,
    interval_words,
    last_quarter_change,
    mean_std,
    paired_interval,
    seed_that_flips,
)
from deit.demo.kinds import KIND_NAMES, STUDENT_TITLES
from deit.demo.kinds import STUDENT_KINDS as STUDENT_ORDER
from deit.io import atomic_write

PAPER_COSINE = {"distillation_token_last_layer": 0.93, "two_class_tokens_last_layer": 0.999}
HEADS = ("cls", "dist", "fused")


def run_scores(metrics: dict[str, Any]) -> dict[str, float | None]:
    """One run's last-epoch top-1 per head, as fractions; a one-head model's fused output is its class head."""
    cls = metrics["cls_acc1"] / 100.0
    dist = metrics["dist_acc1"] / 100.0 if "dist_acc1" in metrics else None
    return {"cls": cls, "dist": dist, "fused": metrics["acc1"] / 100.0}


def summarise_student(kind: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and spreads over seeds of the three heads and the token cosine similarity, plus the per-seed rows."""
    runs = sorted(runs, key=lambda run: run["seed"])
    per_seed = [
        {
            "seed": run["seed"],
            **run_scores(run["metrics"]),
            "cosine": run["cosine"],
            "seconds": round(run["seconds"], 2),
            "run_dir": run["run_dir"],
            # Its own curve's last quarter: tells a converged outlier (a seed's spread) from a stalled run.
            "last_quarter_change": last_quarter_change(run["curve"]),
        }
        for run in runs
    ]
    summary: dict[str, Any] = {
        "title": STUDENT_TITLES.get(kind, kind),
        "model": runs[0]["model"],
        "distillation_type": runs[0]["distillation_type"],
        "seeds": len(runs),
    }
    for key in (*HEADS, "cosine"):
        values = [row[key] for row in per_seed if row[key] is not None]
        summary[key], summary[f"{key}_std"] = mean_std(values)
    summary["per_seed"] = per_seed
    summary["curve"] = mean_curve([run["curve"] for run in runs])
    return summary


def mean_curve(curves: list[list[dict[str, Any]]]) -> list[dict[str, float]]:
    """Per epoch, the mean over seeds of the fused, class-head and distillation-head top-1 (fractions)."""
    length = min((len(curve) for curve in curves), default=0)
    points = []
    for index in range(length):
        rows = [curve[index] for curve in curves]
        point: dict[str, float] = {"epoch": rows[0]["epoch"]}
        for key in ("fused", "cls", "dist"):
            values = [row[key] for row in rows if row.get(key) is not None]
            if values:
                point[key] = statistics.fmean(values)
                point[f"{key}_min"], point[f"{key}_max"] = min(values), max(values)
        points.append(point)
    return points


def paired_comparison(students: dict[str, Any], first: str, second: str = "none") -> dict[str, Any] | None:
    """Fused top-1 of `first` minus `second`, seed by seed (same seeds): the mean gap and how many seeds won."""
    if first not in students or second not in students:
        return None
    a = {row["seed"]: row["fused"] for row in students[first]["per_seed"]}
    b = {row["seed"]: row["fused"] for row in students[second]["per_seed"]}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    gaps = [a[seed] - b[seed] for seed in seeds]
    mean, std = mean_std(gaps)
    points = [100.0 * gap for gap in gaps]
    return {
        "first": first,
        "second": second,
        "metric": "fused top-1",
        "seeds_used": seeds,
        "per_seed": gaps,
        "mean": mean,
        "std": std,
        "wins": sum(gap > 0 for gap in gaps),
        "ties": sum(gap == 0 for gap in gaps),
        "losses": sum(gap < 0 for gap in gaps),
        "seeds": len(seeds),
        # The judgement the verdict and the curve's sentence share: the paired 95% interval (points) and the seed,
        # if any, without which it would say something else (a verdict no seed can flip).
        "interval": paired_interval(points),
        "seed_that_flips": seed_that_flips(points, seeds),
    }


def summarise_size(
    fraction: float,
    teacher: dict[str, Any],
    runs: list[dict[str, Any]],
    *,
    images: int,
    epochs: int,
    teacher_epochs: int,
    data_set: str = "DIGITS",
) -> dict[str, Any]:
    """One training-set size: its teacher, each student kind over seeds, and each kind's paired gain over none."""
    kinds = [kind for kind in STUDENT_ORDER if any(run["kind"] == kind for run in runs)]
    students = {kind: summarise_student(kind, [run for run in runs if run["kind"] == kind]) for kind in kinds}
    gains = {kind: paired_comparison(students, kind) for kind in kinds if kind != "none"}
    return {
        "data_set": data_set,
        "fraction": fraction,
        "images": images,
        "epochs": epochs,
        "teacher": {
            "top1": teacher["metrics"]["acc1"] / 100.0,
            "epochs": teacher_epochs,
            "seconds": round(teacher["seconds"], 2),
            "run_dir": teacher["run_dir"],
        },
        "students": students,
        "gains": {kind: gain for kind, gain in gains.items() if gain is not None},
    }


def headline(sizes: list[dict[str, Any]], fraction: float, kind: str) -> dict[str, Any] | None:
    """The comparison fixed before the run: `kind` minus no distillation at `fraction`, paired by seed, with its
    95% interval (points) and the share of the plain student's gap to the teacher that it closed."""
    row = next((size for size in sizes if size["fraction"] == fraction), None)
    gain = row["gains"].get(kind) if row is not None else None
    if gain is None:
        return None
    closed, closed_per_seed = gap_closed(row, kind)
    return {
        "data_set": row.get("data_set", "DIGITS"),
        "fraction": fraction,
        "images": row["images"],
        "kind": kind,
        "gain": gain["mean"],
        "gain_std": gain["std"],
        "per_seed_gain": gain["per_seed"],
        "interval": gain["interval"],
        "interval_level": 0.95,
        "seed_that_flips": gain["seed_that_flips"],
        "gap_closed": closed,
        "gap_closed_per_seed": closed_per_seed,
        "teacher": row["teacher"]["top1"],
        "seeds": gain["seeds"],
        "wins": gain["wins"],
        "losses": gain["losses"],
        "ties": gain["ties"],
    }


def _size_words(fraction: float, images: int, data_set: str = "DIGITS") -> str:
    where = "" if data_set == "DIGITS" else f" of {data_set}"
    return f"{100 * fraction:g}% of the training set{where} ({images:,} images)"


def verdict(result: dict[str, Any] | None) -> str:
    """One sentence generated from the headline numbers: resolved when the paired 95% interval excludes zero and no
    single seed, left out, changes that; it gives the seed tally and how much of the gap to the teacher was closed."""
    if result is None:
        return "The headline comparison was not measured in this run."
    name = KIND_NAMES.get(result["kind"], result["kind"])
    seeds, wins, losses = result["seeds"], result["wins"], result["losses"]
    spread = f" ± {100.0 * result['gain_std']:.1f}" if result["gain_std"] is not None else ""
    interval = result.get("interval")
    numbers = f"fused top-1 {100.0 * result['gain']:+.1f}{spread} points (paired by seed{interval_words(interval)})"
    where = _size_words(result["fraction"], result["images"], result.get("data_set", "DIGITS"))
    if seeds < 2 or interval is None:
        return (
            f"Not resolved: {name.lower()} vs no distillation at {where}, {numbers}, on a single seed "
            f"(a spread needs --seeds 2 or more)."
        )
    ties = f", tied on {result['ties']}" if result["ties"] else ""
    tally = f"better on {wins} of {seeds} seeds{ties}"
    closed = result.get("gap_closed")
    gap = f"; it closed {100.0 * closed:.0f}% of the plain student's gap to its teacher" if closed is not None else ""
    flips = result.get("seed_that_flips")
    if flips is not None:
        return (
            f"Not resolved: {name.lower()} vs no distillation at {where}: {numbers}, {tally}; one seed decides it "
            f"(without seed {flips} the interval says otherwise){gap}."
        )
    if interval[0] > 0:
        return f"{name} beat no distillation at {where}: {numbers}, {tally}{gap}."
    if interval[1] < 0:
        return f"{name} did not beat no distillation at {where}: {numbers}, worse on {losses} of {seeds} seeds."
    return (
        f"Not resolved: {name.lower()} vs no distillation at {where}: {numbers}, {tally}; the interval includes "
        f"zero{gap}."
    )


def every_seed_sentence(sizes: list[dict[str, Any]]) -> str:
    """Which kinds beat no distillation on every seed, at which sizes; plainly 'none' when nothing did."""
    found: dict[str, list[str]] = {}
    seeds = 0
    for size in sizes:
        for kind, gain in size["gains"].items():
            seeds = max(seeds, gain["seeds"])
            if gain["seeds"] >= 2 and gain["wins"] == gain["seeds"]:
                found.setdefault(kind, []).append(f"{100 * size['fraction']:g}%")
    if seeds < 2:
        return "With a single seed no comparison is resolved."
    if not found:
        return "No variant beat no distillation on every seed at any training-set size."
    parts = [f"{KIND_NAMES[kind].lower()} at {', '.join(found[kind])}" for kind in STUDENT_ORDER if kind in found]
    return f"Better than no distillation on every seed: {'; '.join(parts)}."


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    text = f"{100.0 * value:.1f}"
    return text + (f" ± {100.0 * std:.1f}" if std is not None else "")


def _cos(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def markdown_table(results: dict[str, Any]) -> str:
    """The Table 3 analogue: teacher top-1, then per student the three heads and the token cosine similarity."""
    teacher = results["teacher"]
    seeds = results["config"]["seeds"]
    lines = [
        f"| model (top-1 %, mean ± std over {seeds} seed{'s' if seeds > 1 else ''}) | class head | "
        f"distillation head | fused | cos(class, distillation token), last layer |",
        "|---|---|---|---|---|",
        f"| teacher: {teacher['label']} | {_pct(teacher['top1'])} | – | – | – |",
    ]
    for kind in STUDENT_ORDER:
        student = results["students"].get(kind)
        if student is None:
            continue
        lines.append(
            f"| {student['title']} | {_pct(student['cls'], student['cls_std'])} | "
            f"{_pct(student['dist'], student['dist_std'])} | {_pct(student['fused'], student['fused_std'])}"
            f" | {_cos(student['cosine'], student['cosine_std'])} |"
        )
    return "\n".join(lines)


def _kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in kwargs.items())


def _size_header(size: dict[str, Any]) -> str:
    return f"{100 * size['fraction']:g}% ({size['images']:,} images, {size['epochs']} epochs)"


def size_table(results: dict[str, Any], sizes: list[dict[str, Any]] | None = None) -> str:
    """Fused top-1 per kind (rows) and training-set size (columns): the numbers of the headline picture."""
    sizes = results["sizes"] if sizes is None else sizes
    seeds = max((student["seeds"] for size in sizes for student in size["students"].values()), default=0)
    lines = [
        f"| fused top-1 %, mean ± std over {seeds} seed{'s' if seeds > 1 else ''} | "
        + " | ".join(_size_header(size) for size in sizes)
        + " |",
        "|---|" + "---|" * len(sizes),
        f"| teacher: {results['teacher']['label']}, trained on the same images | "
        + " | ".join(_pct(size["teacher"]["top1"]) for size in sizes)
        + " |",
    ]
    for kind in STUDENT_ORDER:
        cells = [size["students"].get(kind) for size in sizes]
        if any(cells):
            lines.append(
                f"| {STUDENT_TITLES[kind]} | "
                + " | ".join(_pct(cell["fused"], cell["fused_std"]) if cell else "–" for cell in cells)
                + " |"
            )
    return "\n".join(lines)


def _gain_cell(gain: dict[str, Any] | None) -> str:
    if gain is None:
        return "–"
    spread = f" ± {100.0 * gain['std']:.1f}" if gain["std"] is not None else ""
    return f"{100.0 * gain['mean']:+.1f}{spread} ({gain['wins']}/{gain['seeds']} seeds better)"


def gain_table(results: dict[str, Any]) -> str:
    """Each kind minus no distillation, fused top-1 points paired by seed, and on how many seeds it was better."""
    sizes = results["sizes"]
    lines = [
        "| gain over no distillation, points (seeds better) | "
        + " | ".join(f"{100 * size['fraction']:g}%" for size in sizes)
        + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for kind in STUDENT_ORDER[1:]:
        gains = [size["gains"].get(kind) for size in sizes]
        if any(gains):
            lines.append(f"| {kind} | " + " | ".join(_gain_cell(gain) for gain in gains) + " |")
    return "\n".join(lines)


def per_seed_table(results: dict[str, Any]) -> str:
    """Fused top-1 of every run, so the spread behind each ± is visible."""
    every_size = results["sizes"] + results.get("headline_sizes", [])
    rows = [(size, kind, student) for size in every_size for kind, student in size["students"].items()]
    seeds = sorted({row["seed"] for _, _, student in rows for row in student["per_seed"]})
    lines = ["| fused top-1 % | " + " | ".join(f"seed {seed}" for seed in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for size, kind, student in rows:
        by_seed = {row["seed"]: row["fused"] for row in student["per_seed"]}
        lines.append(f"| {kind}, {_where(size)} | " + " | ".join(_pct(by_seed.get(seed)) for seed in seeds) + " |")
    return "\n".join(lines)


def _where(size: dict[str, Any]) -> str:
    data_set = size.get("data_set", "DIGITS")
    return f"{100 * size['fraction']:g}%" + ("" if data_set == "DIGITS" else f" {data_set}")


def markdown_report(results: dict[str, Any]) -> str:
    """`results.md`: the tables, the verdict, what ran, on what, and how long it took."""
    config, timings, machine = results["config"], results["timings"], results["machine"]
    student = config["student"]
    load = machine.get("load_average_start"), machine.get("load_average_end")
    load_text = (
        f"; 1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end" if None not in load else ""
    )
    full = (results["sizes"] or results.get("headline_sizes"))[-1]
    headline = results.get("headline") or {}
    headline_section = []
    if results.get("headline_sizes"):
        headline_section = [
            f"## The headline setting: {headline.get('data_set')}",
            "",
            size_table(results, results["headline_sizes"]),
            "",
        ]
    return "\n".join(
        [
            "# deit demo: what distillation through attention buys, on DIGITS",
            "",
            f"Command: `{results['command']}`",
            "",
            f"**{results['verdict']}**",
            f"(The headline's setting and comparison were fixed before its runs: {config['headline_kind']} against "
            f"no distillation on {config['headline_data_set']} at {100 * config['headline_fraction']:g}%, "
            f"benchmarks/demo_sweep/headline_issue32.py.)",
            "",
            *headline_section,
            "## Top-1 vs training-set size on DIGITS",
            "",
            size_table(results),
            "",
            gain_table(results),
            "",
            f"{results['where_the_teacher_helps']} {results['every_seed']}",
            "",
            results["training_check"]["sentence"],
            "",
            "![top-1 vs training-set size](data_efficiency.png)",
            "",
            f"## The paper's Table 3 at laptop scale: {_size_header(full)}",
            "",
            markdown_table(results),
            "",
            f"Paper (ImageNet, DeiT-B⚗): cosine {PAPER_COSINE['distillation_token_last_layer']} between the class and "
            f"distillation tokens at the last layer; {PAPER_COSINE['two_class_tokens_last_layer']} with two class "
            f"tokens.",
            "",
            "## Every run",
            "",
            per_seed_table(results),
            "",
            f"- Data: scikit-learn's 8×8 digits (1,437 train / 360 val images), upsampled to {config['input_size']}×"
            f"{config['input_size']}; DIGITS-CANVAS: the same digits enlarged ×2, each at its own place on a 32×32 "
            f"canvas. Smaller sizes are nested stratified subsets (`--train-subset`, seed {config['subset_seed']}), "
            f"passed over 1 / fraction times per epoch (`--epoch-repeats`); every size is evaluated on all 360 "
            f"validation images. Training augmentation: random crop with 4 px padding only.",
            f"- Students: {student['name']} with {_kwargs(student['kwargs'])} (a {student['grid']}×{student['grid']} "
            f"grid of patches), `--recipe small-data`, {config['epochs']} epochs at every size (the same number of "
            f"steps), batch {config['batch_size']}, AdamW lr {config['lr']:g} (schedule stepped per update). "
            f"Soft: α {config['soft_alpha']}, "
            f"τ {config['distillation_tau']}, KL {config['kl_reduction']}; hard: α {config['hard_alpha']}. Below the "
            f"full size: {', '.join(config['subset_kinds'])}; at the full size: "
            f"{', '.join(config['full_size_kinds'])} (`--table3` adds the control and hard distillation).",
            f"- Teachers: {results['teacher']['label']}, one per size trained on the same images, "
            f"{config['teacher_epochs']} epochs, batch {config['teacher_batch_size']}, lr {config['teacher_lr']:g}, "
            f"by the same engine.",
            f"- Time: {timings['total_seconds']:.0f} s in all, {timings['training_seconds']:.0f} s of training "
            f"({config['jobs']} parallel run(s), {config['threads_per_run']} thread(s) each).",
            f"- Machine: {machine['description']}{load_text}.",
            "",
        ]
    )


def write_results(results: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """Write `results.json` and `results.md` (the pictures: demo_plots); returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "results.json", "markdown": output_dir / "results.md"}
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(paths["json"], lambda tmp: Path(tmp).write_text(text))
    report = markdown_report(results)
    atomic_write(paths["markdown"], lambda tmp: Path(tmp).write_text(report))
    return paths
