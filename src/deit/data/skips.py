"""Reporting of unusable image files: one log line each, a count, and `skipped_files.txt` in the run folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from deit.errors import DeitError

LOGGER = logging.getLogger("deit.data")
REPORT_NAME = "skipped_files.txt"
_STRICT_LISTED = 5


def report_skipped(skipped: list[tuple[str, str]], *, where: str, total: int, report_dir: str | None) -> None:
    """Log one warning line per skipped file plus a summary, and append them to `report_dir/skipped_files.txt`."""
    if not skipped:
        return
    for path, reason in skipped:
        LOGGER.warning("skipping unusable image %s: %s", path, reason)
    destination = f" (listed in {Path(report_dir) / REPORT_NAME})" if report_dir else ""
    LOGGER.warning("skipped %d of %d files under %s%s", len(skipped), total, where, destination)
    if report_dir:
        append_report(report_dir, skipped)


def append_report(report_dir: str, skipped: list[tuple[str, str]]) -> None:
    """Add `path<TAB>reason` lines to the report, once each (train, val and resumed runs share the file)."""
    report = Path(report_dir) / REPORT_NAME
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        known = set(report.read_text(encoding="utf-8").splitlines()) if report.is_file() else set()
        lines = [f"{path}\t{reason}" for path, reason in skipped]
        fresh = [line for line in dict.fromkeys(lines) if line not in known]
        if fresh:
            # O_APPEND keeps concurrent writers (data-loader workers) from overwriting each other's lines.
            with open(report, "a", encoding="utf-8") as handle:
                handle.write("".join(line + os.linesep for line in fresh))
    except OSError as error:
        LOGGER.warning("could not write %s: %s", report, error)


def raise_strict(skipped: list[tuple[str, str]], *, where: str) -> None:
    """The `--strict-data` failure: a one-line `DeitError` naming the first few bad files."""
    listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:_STRICT_LISTED])
    more = f"; and {len(skipped) - _STRICT_LISTED} more" if len(skipped) > _STRICT_LISTED else ""
    raise DeitError(
        f"--strict-data: {len(skipped)} unusable image file(s) under {where}: {listed}{more} "
        "(fix or remove them, or drop --strict-data to skip them with a warning)"
    )
