"""`deit demo`'s pictures: top-1 vs training-set size (the headline) and the full-size students' learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deit.demo.kinds import STUDENT_KINDS as STUDENT_ORDER
from deit.demo.kinds import STUDENT_TITLES
from deit.io import atomic_write

#: One colour per kind, the same in both pictures.
KIND_COLORS = {"none": "tab:gray", "two_cls_tokens": "tab:purple", "soft": "tab:blue", "hard": "tab:orange"}


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.6), dpi=110)
    return figure, figure.subplots()


def _save(figure: Any, axes: Any, path: Path, footnote: str | None = None) -> Path:
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    if footnote:  # below the axes, in a margin kept free for it
        figure.text(0.01, 0.01, footnote, fontsize=7, wrap=True)
    figure.tight_layout(rect=(0, 0.08 if footnote else 0, 1, 1))
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def plot_data_efficiency(results: dict[str, Any], path: Path) -> Path:
    """Fused top-1 vs training images: per kind the mean over seeds, each seed as a dot; the teachers dashed.
    With a separate headline setting (DIGITS-CANVAS), a second panel shows it beside the DIGITS curve."""
    from matplotlib.figure import Figure

    panels = [("DIGITS", results["sizes"])] if results["sizes"] else []
    if results.get("headline_sizes"):
        panels.append((results["headline"]["data_set"], results["headline_sizes"]))
    figure = Figure(figsize=(7.5 if len(panels) == 1 else 11.0, 4.8), dpi=110)
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (name, sizes) in zip(axes_list, panels):
        _data_efficiency_panel(axes, name, sizes)
    for axes in axes_list[1:]:
        axes.grid(alpha=0.3)
    return _save(figure, axes_list[0], path, footnote=results.get("verdict"))


def _data_efficiency_panel(axes: Any, name: str, sizes: list[dict[str, Any]]) -> None:
    images = [size["images"] for size in sizes]
    counts: set[int] = set()
    for kind in STUDENT_ORDER:
        points = [(size["images"], size["students"][kind]) for size in sizes if kind in size["students"]]
        if not points:
            continue
        color = KIND_COLORS[kind]
        xs = [x for x, _ in points]
        axes.plot(
            xs, [100 * student["fused"] for _, student in points], marker="o", color=color, label=STUDENT_TITLES[kind]
        )
        for x, student in points:  # every seed, so the spread behind the mean is visible
            values = [100 * row["fused"] for row in student["per_seed"]]
            counts.add(len(values))
            axes.scatter([x] * len(values), values, s=12, color=color, alpha=0.45, linewidths=0)
    axes.plot(
        images,
        [100 * size["teacher"]["top1"] for size in sizes],
        color="black",
        linestyle="--",
        linewidth=1,
        marker="x",
        label="teacher (ResNet-18 ¼), same images",
    )
    axes.set_xscale("log")
    axes.set_xticks(images)
    axes.set_xticklabels([f"{size['images']:,}\n({100 * size['fraction']:g}%)" for size in sizes])
    axes.minorticks_off()
    axes.set_ylim(top=100.5)  # the scale stays honest: 100% is always in view
    axes.set(
        xlabel=f"training images (share of {name}' training split)",
        ylabel="validation top-1 (%), fused",
        title=f"{name}: top-1 vs training-set size\nline = mean of {_seed_count(counts)}, dots = seeds",
    )


def _seed_count(counts: set[int]) -> str:
    low, high = min(counts, default=0), max(counts, default=0)
    return f"{low} seed{'s' * (low != 1)}" if low == high else f"{low}–{high} seeds"


def plot_curves(results: dict[str, Any], path: Path) -> Path:
    """`curves.png`: each full-size student's fused validation top-1 per epoch (mean over seeds, band = min..max)."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure()
    for kind in STUDENT_ORDER:
        student = results["students"].get(kind)
        if not student or not student["curve"]:
            continue
        curve = student["curve"]
        epochs = [point["epoch"] for point in curve]
        (line,) = axes.plot(
            epochs,
            [100 * point["fused"] for point in curve],
            marker="o",
            markersize=3,
            color=KIND_COLORS[kind],
            label=student["title"],
        )
        if student["seeds"] > 1:
            axes.fill_between(
                epochs,
                [100 * point["fused_min"] for point in curve],
                [100 * point["fused_max"] for point in curve],
                color=line.get_color(),
                alpha=0.15,
            )
    teacher = results["teacher"]
    if teacher.get("top1") is not None:
        axes.axhline(
            100 * teacher["top1"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"teacher ({100 * teacher['top1']:.1f}%)",
        )
    seeds = results["config"]["seeds"]
    axes.set(
        xlabel="epoch",
        ylabel="validation top-1 (%)",
        title=f"DIGITS, full training set: fused top-1, mean of {seeds} seed{'s' if seeds > 1 else ''} (band: min–max)",
    )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(figure, axes, path)
