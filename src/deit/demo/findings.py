"""What the demo's numbers say beyond the means: paired intervals, the share of the gap to the teacher that
distillation closed, where on the curve the teacher helped, and whether the students trained (stalls, the last
quarter of the schedule). Accuracies are fractions in [0, 1] in, points in the sentences and intervals.
"""

from __future__ import annotations

import statistics
from typing import Any

from deit.demo.kinds import KIND_NAMES
from deit.demo.kinds import STUDENT_KINDS as STUDENT_ORDER


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when there is no value / a single value)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired_interval(gains: list[float], level: float = 0.95) -> list[float] | None:
    """The two-sided `level` Student-t interval of the mean of paired differences (None below two pairs)."""
    if len(gains) < 2:
        return None
    from scipy.stats import t

    mean, std = mean_std(gains)
    half = float(t.ppf(0.5 + level / 2, len(gains) - 1)) * std / len(gains) ** 0.5  # type: ignore[operator]
    return [mean - half, mean + half]  # type: ignore[operator]


def seed_that_flips(gains: list[float], seeds: list[int], level: float = 0.95) -> int | None:
    """The seed whose removal changes what the paired interval of `gains` says (above zero, below zero, or
    around it), or None when no single seed does. Needs four pairs or more: three left of three are an interval
    with 2 degrees of freedom, two left of three one with a single degree (12.7 standard errors wide), no test."""
    if len(gains) < 4:
        return None
    full = _side(paired_interval(gains, level))
    for index, seed in enumerate(seeds):
        rest = gains[:index] + gains[index + 1 :]
        if _side(paired_interval(rest, level)) != full:
            return seed
    return None


def _side(interval: list[float] | None) -> int:
    """+1 above zero, -1 below, 0 when the interval includes zero (or there is none)."""
    if interval is None:
        return 0
    return 1 if interval[0] > 0 else -1 if interval[1] < 0 else 0


def gap_closed(row: dict[str, Any], kind: str) -> tuple[float | None, list[float | None]]:
    """(mean over seeds, per seed) of (kind - none) / (teacher - none): the share of the plain student's gap to
    its teacher that distillation closed; a seed whose plain student matched its teacher has no gap (None)."""
    teacher = row["teacher"]["top1"]
    plain = {seed_row["seed"]: seed_row["fused"] for seed_row in row["students"]["none"]["per_seed"]}
    shares: list[float | None] = []
    for seed_row in row["students"][kind]["per_seed"]:
        gap = teacher - plain[seed_row["seed"]]
        shares.append((seed_row["fused"] - plain[seed_row["seed"]]) / gap if gap > 0 else None)
    known = [share for share in shares if share is not None]
    return (statistics.fmean(known) if known else None), shares


def curve(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data-efficiency curve in plain numbers: per size the teacher and each kind's per-seed fused top-1 (%)."""
    points = []
    for size in sizes:
        point: dict[str, Any] = {
            "fraction": size["fraction"],
            "images": size["images"],
            "teacher": round(100.0 * size["teacher"]["top1"], 2),
        }
        for kind in STUDENT_ORDER:
            if kind in size["students"]:
                point[kind] = [round(100.0 * row["fused"], 2) for row in size["students"][kind]["per_seed"]]
        points.append(point)
    return points


def interval_words(interval: list[float] | None) -> str:
    """ ", 95% interval [low, high]" (points), or nothing without an interval."""
    return f", 95% interval [{interval[0]:+.1f}, {interval[1]:+.1f}]" if interval else ""


def teacher_help_sentence(sizes: list[dict[str, Any]], kind: str = "soft") -> str:
    """Where the teacher helped on the curve and where it did not, size by size, judged as the verdict is: by the
    paired interval, unless one seed left out would change what it says."""
    helped, hurt, neither = [], [], []
    for size in sizes:
        gain = size["gains"].get(kind)
        if gain is None or gain["seeds"] < 2:
            continue
        interval, flips = gain["interval"], gain["seed_that_flips"]
        label = f"{100 * size['fraction']:g}% ({100.0 * gain['mean']:+.1f}{interval_words(interval)})"
        if flips is not None:
            neither.append(f"{label[:-1]}; seed {flips} decides it)")
        elif interval is not None and interval[0] > 0:
            helped.append(label)
        elif interval is not None and interval[1] < 0:
            hurt.append(label)
        else:
            neither.append(label)
    if not (helped or hurt or neither):
        return "Where the teacher helps needs two seeds or more at a size."
    name = KIND_NAMES[kind].lower()
    parts = []
    if helped:
        parts.append(f"{name} helped at {', '.join(helped)}")
    if neither:
        parts.append(f"made no difference the seeds could resolve at {', '.join(neither)}")
    if hurt:
        parts.append(f"hurt at {', '.join(hurt)}")
    return f"On DIGITS, {'; '.join(parts)} (fused top-1 points, paired by seed)."


#: A seed this far (points) from its kind's median at a size is a stalled (or lucky) run, not the recipe's result.
STALL_POINTS = 3.0
#: A curve whose last quarter moved less than this (points) has converged.
CONVERGED_POINTS = 1.0


def training_check(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Did the students train? Per size and kind: the seeds far from the median (stalls) and how much the last
    quarter of the schedule moved the mean fused top-1 (converged: under a point)."""
    rows, stalls = [], []
    for size in sizes:
        for kind, student in size["students"].items():
            fused = [100.0 * row["fused"] for row in student["per_seed"]]
            middle = statistics.median(fused)
            far = [row for row, value in zip(student["per_seed"], fused) if abs(value - middle) > STALL_POINTS]
            stalls += [
                {
                    "data_set": size.get("data_set", "DIGITS"),
                    "fraction": size["fraction"],
                    "kind": kind,
                    "seed": row["seed"],
                    "points_from_median": 100.0 * row["fused"] - middle,
                    "own_last_quarter_change": row.get("last_quarter_change"),
                }
                for row in far
            ]
            rows.append(
                {
                    "data_set": size.get("data_set", "DIGITS"),
                    "fraction": size["fraction"],
                    "kind": kind,
                    "spread_from_median": max(abs(value - middle) for value in fused),
                    "last_quarter_change": last_quarter_change(student["curve"]),
                }
            )
    moves = [row["last_quarter_change"] for row in rows if row["last_quarter_change"] is not None]
    largest = max(moves, key=abs) if moves else None
    stall_text = (
        f"no stalls (every seed within {STALL_POINTS:g} points of its kind's median at every size)"
        if not stalls
        else f"{len(stalls)} run(s) more than {STALL_POINTS:g} points from their kind's median: "
        + ", ".join(_far_run_words(row) for row in stalls)
    )
    move_text = (
        f"the last quarter of each schedule moved mean fused top-1 by at most {abs(largest):.1f} points"
        if largest is not None
        else "too few evaluations to measure the last quarter"
    )
    return {"stalls": stalls, "rows": rows, "sentence": f"Training check: {stall_text}; {move_text}."}


def _far_run_words(row: dict[str, Any]) -> str:
    """`none 3% seed 7 (-4.2, flat over its last quarter)`: a converged outlier reads apart from a stalled run."""
    words = f"{row['kind']} {100 * row['fraction']:g}% seed {row['seed']} ({row['points_from_median']:+.1f}"
    own = row.get("own_last_quarter_change")
    if own is None:
        return words + ")"
    flat = abs(own) < CONVERGED_POINTS
    state = "flat over its last quarter" if flat else f"its last quarter moved {own:+.1f}: still training"
    return f"{words}, {state})"


def last_quarter_change(points: list[dict[str, Any]]) -> float | None:
    """Fused top-1 (points) at the end minus at the first evaluation at or past 75% of the schedule (a run's curve
    or a kind's mean curve)."""
    if len(points) < 2:
        return None
    last = points[-1]["epoch"]
    start = next(point for point in points if point["epoch"] >= 0.75 * last)
    return 100.0 * (points[-1]["fused"] - start["fused"])
