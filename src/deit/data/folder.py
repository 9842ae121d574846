"""A folder-per-class image dataset (the ImageNet layout) that checks its files before training starts.

Construction lists `root/<class>/**/<file>` (hidden files ignored; see `_files_under` for links and special
files), then probes every file cheaply in a thread
pool (`deit.data.images.probe_image`: header, size limit, `Image.verify()`). Unusable files (corrupt, truncated,
empty, not images, decompression bombs) are skipped, logged one line each, counted, and appended to
`report_dir/skipped_files.txt`; with `strict_data=True` they raise `DeitError` instead.

Some damage only shows when pixels are decoded (a JPEG cut off mid-payload passes the header check). Such a
file must not end an epoch hours in: `__getitem__` then returns the next decodable sample in index order
(deterministic, with that sample's own label), records the file in `skipped` and the report, and never tries
it again in that process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from deit.data.images import probe_image, read_image
from deit.data.skips import LOGGER, append_report, raise_strict, report_skipped
from deit.errors import DeitError

_SERIAL_SCAN_BELOW = 64
_MAX_FALLBACK_TRIES = 64


class FolderDataset(Dataset):
    """Images in `root/<class name>/...`, labelled by sorted class-folder name; bad files skipped up front."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        transform: Callable | None = None,
        classes: list[str] | None = None,
        strict_data: bool = False,
        report_dir: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.report_dir = report_dir
        if not self.root.is_dir():
            raise DeitError(f"{self.root}: no such folder")
        self.classes = list(classes) if classes is not None else class_folders(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        candidates, unlisted = self._list_files()
        reasons = _probe_all([path for path, _ in candidates])
        self.skipped: list[tuple[str, str]] = unlisted + [
            (path, reason) for (path, _), reason in zip(candidates, reasons) if reason is not None
        ]
        if strict_data and self.skipped:
            raise_strict(self.skipped, where=str(self.root))
        report_skipped(self.skipped, where=str(self.root), total=len(candidates) + len(unlisted), report_dir=report_dir)
        self.samples: list[tuple[str, int]] = [sample for sample, reason in zip(candidates, reasons) if reason is None]
        self._check_every_class_has_images(candidates)
        self.targets = [target for _, target in self.samples]
        self._known_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self._load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    def _load(self, index: int) -> tuple[Image.Image, int]:
        candidate, image = self.first_decodable(index)
        return image, self.samples[candidate][1]

    def first_decodable(self, index: int) -> tuple[int, Image.Image]:
        """The first sample at or after `index` (in index order, wrapping) that decodes, and its image; the ones
        that fail are skipped, logged and reported (the DALI loader substitutes its undecodable files this way)."""
        for attempt in range(min(len(self.samples), _MAX_FALLBACK_TRIES)):
            candidate = (index + attempt) % len(self.samples)
            if candidate in self._known_bad:
                continue
            path, _ = self.samples[candidate]
            try:
                return candidate, read_image(path)
            except DeitError as error:
                self._record_late_failure(candidate, path, str(error).removeprefix(f"{path}: "))
        raise DeitError(
            f"{self.root}: {_MAX_FALLBACK_TRIES} images in a row after index {index} failed to "
            f"decode (see the warnings above); the data set is too damaged to train on"
        )

    def _record_late_failure(self, index: int, path: str, reason: str) -> None:
        self._known_bad.add(index)
        self.skipped.append((path, reason))
        LOGGER.warning("skipping unusable image %s: %s (failed at decode; using the next image instead)", path, reason)
        if self.report_dir:
            append_report(self.report_dir, [(path, reason)])

    def _list_files(self) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
        present = class_folders(self.root, allow_empty=True)
        unknown = [name for name in present if name not in self.class_to_idx]
        if unknown:
            raise DeitError(
                f"{self.root}: class folder(s) {', '.join(unknown[:5])} not among the "
                f"{len(self.classes)} training classes (train/ and val/ must name the same classes)"
            )
        candidates: list[tuple[str, int]] = []
        unlisted: list[tuple[str, str]] = []
        seen: dict[str, str] = {}  # real path -> the path it was listed under: no file counted twice
        for name in present:
            folder = self.root / name
            files, refused = _files_under(folder, seen)
            if not files and not refused:
                raise DeitError(f"{folder}: empty class folder (no files); remove it or add its images")
            candidates += [(path, self.class_to_idx[name]) for path in files]
            unlisted += refused
        if not candidates:
            raise DeitError(f"{self.root}: no image files in its class folders")
        return candidates, unlisted

    def _check_every_class_has_images(self, candidates: list[tuple[str, int]]) -> None:
        if not self.samples:
            raise DeitError(f"{self.root}: none of its {len(candidates)} files is a usable image")
        listed = {target for _, target in candidates}
        usable = {target for _, target in self.samples}
        for target in sorted(listed - usable):
            raise DeitError(f"{self.root / self.classes[target]}: no usable images (every file was skipped)")


def class_folders(root: Path, *, allow_empty: bool = False) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `root`: the class names, as torchvision's ImageFolder."""
    try:
        names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    except OSError as error:
        raise DeitError(f"{root}: cannot list folder ({error.strerror or error})") from error
    if not names and not allow_empty:
        raise DeitError(f"{root}: no class folders (expected {root}/<class name>/<image files>)")
    return names


def _files_under(folder: Path, seen: dict[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files of a class folder, in sorted order, and the entries refused with their reasons.

    The class folder itself may be a link (data kept elsewhere), but below it a link to a folder is never
    followed (it could lead back up: a loop, or another class's images), a linked file is taken once by its
    real path (`seen`, shared by all classes).
    """
    found: list[str] = []
    refused: list[tuple[str, str]] = []
    pending = [str(folder)]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            refused.append((directory, f"cannot list folder ({error.strerror or error})"))
            continue
        subfolders = []
        real_directory = os.path.realpath(directory)  # once per folder: a plain file's real path is below it
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            elif entry.is_symlink() and entry.is_dir():
                refused.append((entry.path, "a link to a folder inside a class folder (not followed)"))
            else:  # FIFOs, devices and broken links are refused, unopened, by the probe
                real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real_directory, entry.name)
                if real in seen:
                    refused.append((entry.path, f"the same file as {seen[real]} (listed once)"))
                else:
                    seen[real] = entry.path
                    found.append(entry.path)
        pending.extend(reversed(subfolders))  # depth first, in sorted order, as os.walk listed them
    return found, refused


def _probe_all(paths: list[str]) -> list[str | None]:
    if len(paths) < _SERIAL_SCAN_BELOW:
        return [probe_image(path) for path in paths]
    if len(paths) > 100_000:
        LOGGER.info("checking %d image files ...", len(paths))
    # Probing is mostly file-system latency (a header read), so threads overlap it well despite the GIL.
    workers = min(32, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deit-scan") as pool:
        return list(pool.map(probe_image, paths, chunksize=256))
