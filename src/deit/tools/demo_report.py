"""What `deit demo` writes: per-student means and spreads over seeds, `results.json`, `results.md`, `curves.png`.

Accuracies are fractions in [0, 1] in the JSON and percentages in the Markdown table. The spread is the sample
standard deviation over seeds (null with a single seed). No run is selected on the validation set: every number
is the last epoch's.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from deit.io import atomic_write

STUDENT_ORDER = ("none", "two_cls_tokens", "soft", "hard")
STUDENT_TITLES = {
    "none": "no distillation (plain DeiT, one class token)",
    "two_cls_tokens": "two class tokens, both on labels (control)",
    "soft": "DeiT⚗ soft distillation",
    "hard": "DeiT⚗ hard distillation",
}
PAPER_COSINE = {"distillation_token_last_layer": 0.93, "two_class_tokens_last_layer": 0.999}
HEADS = ("cls", "dist", "fused")


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when there is no value / a single value)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def run_scores(metrics: dict[str, Any]) -> dict[str, float | None]:
    """One run's last-epoch top-1 per head, as fractions; a one-head model's fused output is its class head."""
    cls = metrics["cls_acc1"] / 100.0
    dist = metrics["dist_acc1"] / 100.0 if "dist_acc1" in metrics else None
    return {"cls": cls, "dist": dist, "fused": metrics["acc1"] / 100.0}


def summarise_student(kind: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and spreads over seeds of the three heads and the token cosine similarity, plus the per-seed rows."""
    runs = sorted(runs, key=lambda run: run["seed"])
    per_seed = [{"seed": run["seed"], **run_scores(run["metrics"]), "cosine": run["cosine"],
                 "seconds": round(run["seconds"], 2), "run_dir": run["run_dir"]} for run in runs]
    summary: dict[str, Any] = {"title": STUDENT_TITLES.get(kind, kind), "model": runs[0]["model"],
                               "distillation_type": runs[0]["distillation_type"], "seeds": len(runs)}
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


def paired_comparison(students: dict[str, Any], first: str = "hard", second: str = "none") -> dict[str, Any] | None:
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
    return {"first": first, "second": second, "metric": "fused top-1", "per_seed": dict(zip(seeds, gaps)),
            "mean": mean, "std": std, "wins": sum(gap > 0 for gap in gaps), "ties": sum(gap == 0 for gap in gaps),
            "seeds": len(seeds)}


def verdict(comparison: dict[str, Any] | None) -> str:
    """One honest sentence on whether hard distillation beat no distillation in this run."""
    if comparison is None:
        return "hard distillation vs no distillation: not measured in this run."
    gap = 100.0 * comparison["mean"]
    spread = f" ± {100.0 * comparison['std']:.1f}" if comparison["std"] is not None else ""
    seeds = comparison["seeds"]
    tally = f"better on {comparison['wins']} of {seeds} seed{'s' if seeds > 1 else ''}"
    if comparison["ties"]:
        tally += f", tied on {comparison['ties']}"
    noisy = comparison["std"] is not None and abs(comparison["mean"]) <= comparison["std"]
    if gap > 0:
        word = "beat no distillation, within the seed-to-seed spread" if noisy else "beat no distillation"
    elif gap < 0:
        word = ("did not beat no distillation (behind, within the seed-to-seed spread)" if noisy
                else "did not beat no distillation")
    else:
        word = "tied with no distillation"
    return f"Hard distillation {word}: fused top-1 {gap:+.1f}{spread} points (paired by seed; {tally})."


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
    lines = [f"| model (top-1 %, mean ± std over {seeds} seed{'s' if seeds > 1 else ''}) | class head | "
             f"distillation head | fused | cos(class, distillation token), last layer |",
             "|---|---|---|---|---|",
             f"| teacher: {teacher['label']} | {_pct(teacher['top1'])} | – | – | – |"]
    for kind in STUDENT_ORDER:
        student = results["students"].get(kind)
        if student is None:
            continue
        lines.append(f"| {student['title']} | {_pct(student['cls'], student['cls_std'])} | "
                     f"{_pct(student['dist'], student['dist_std'])} | {_pct(student['fused'], student['fused_std'])}"
                     f" | {_cos(student['cosine'], student['cosine_std'])} |")
    return "\n".join(lines)


def _kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in kwargs.items())


def per_seed_table(results: dict[str, Any]) -> str:
    """Fused top-1 of every run, so the spread behind each ± is visible."""
    seeds = sorted({row["seed"] for student in results["students"].values() for row in student["per_seed"]})
    lines = ["| fused top-1 % | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
             "|---|" + "---|" * len(seeds)]
    for kind in STUDENT_ORDER:
        student = results["students"].get(kind)
        if student is None:
            continue
        by_seed = {row["seed"]: row["fused"] for row in student["per_seed"]}
        lines.append(f"| {kind} | " + " | ".join(_pct(by_seed.get(seed)) for seed in seeds) + " |")
    return "\n".join(lines)


def markdown_report(results: dict[str, Any]) -> str:
    """`results.md`: the table, the verdict, what ran, on what, and how long it took."""
    config, timings, machine = results["config"], results["timings"], results["machine"]
    student = config["student"]
    load = machine.get("load_average_start"), machine.get("load_average_end")
    load_text = (f"; 1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
                 if None not in load else "")
    return "\n".join([
        "# deit demo: distillation through attention on DIGITS",
        "",
        f"Command: `{results['command']}`",
        "",
        markdown_table(results),
        "",
        results["verdict"],
        f"Paper (ImageNet, DeiT-B⚗): cosine {PAPER_COSINE['distillation_token_last_layer']} between the class and "
        f"distillation tokens at the last layer; {PAPER_COSINE['two_class_tokens_last_layer']} with two class "
        f"tokens.",
        "",
        per_seed_table(results),
        "",
        f"- Data: scikit-learn's 8×8 digits (1,437 train / 360 val images), upsampled to {config['input_size']}×"
        f"{config['input_size']}; training augmentation: random crop with 4 px padding only.",
        f"- Students: {student['name']} with {_kwargs(student['kwargs'])} ({student['grid']}×{student['grid']} "
        f"patches), "
        f"{config['epochs']} epochs, batch {config['batch_size']}, AdamW lr {config['lr']:g}; distillation "
        f"α {config['distillation_alpha']}, τ {config['distillation_tau']}.",
        f"- Teacher: {results['teacher']['label']}, {config['teacher_epochs']} epochs, trained by the same engine.",
        f"- Time: {timings['total_seconds']:.0f} s in all, {timings['training_seconds']:.0f} s of training "
        f"({config['jobs']} parallel run(s), {config['threads_per_run']} thread(s) each).",
        f"- Machine: {machine['description']}{load_text}.",
        "",
    ])


def plot_curves(results: dict[str, Any], path: Path) -> Path:
    """`curves.png`: each student's fused validation top-1 per epoch (mean over seeds, band = min..max)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7, 4.2), dpi=110)
    axes = figure.subplots()
    for kind in STUDENT_ORDER:
        student = results["students"].get(kind)
        if not student or not student["curve"]:
            continue
        curve = student["curve"]
        epochs = [point["epoch"] for point in curve]
        line, = axes.plot(epochs, [100 * point["fused"] for point in curve], marker="o", markersize=3,
                          label=student["title"])
        if student["seeds"] > 1:
            axes.fill_between(epochs, [100 * point["fused_min"] for point in curve],
                              [100 * point["fused_max"] for point in curve], color=line.get_color(), alpha=0.15)
    teacher = results["teacher"]
    if teacher.get("top1") is not None:
        axes.axhline(100 * teacher["top1"], color="black", linestyle="--", linewidth=1,
                     label=f"teacher ({100 * teacher['top1']:.1f}%)")
    seeds = results["config"]["seeds"]
    axes.set(xlabel="epoch", ylabel="validation top-1 (%)",
             title=f"DIGITS: fused top-1, mean of {seeds} seed{'s' if seeds > 1 else ''} (band: min–max)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def write_results(results: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """Write `results.json`, `results.md` and `curves.png` into `output_dir`; returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "results.json", "markdown": output_dir / "results.md",
             "plot": output_dir / "curves.png"}
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(paths["json"], lambda tmp: Path(tmp).write_text(text))
    report = markdown_report(results)
    atomic_write(paths["markdown"], lambda tmp: Path(tmp).write_text(report))
    plot_curves(results, paths["plot"])
    return paths
