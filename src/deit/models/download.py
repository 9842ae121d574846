"""Fetch an official checkpoint once into the torch hub cache, checking the sha256 prefix in its file name."""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch

from deit.errors import DeitError
from deit.io import atomic_write

# Official file names end in `-<first hex digits of the sha256>.pth` (torch.hub's convention).
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")
_CHUNK = 1 << 20


def is_url(text: str) -> bool:
    """Whether `text` names an http(s) resource rather than a local path."""
    return urlparse(text).scheme in ("http", "https")


def cache_path(url: str) -> Path:
    """Where `url` is kept: `<torch hub dir>/checkpoints/<file name>` (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def expected_hash_prefix(url: str) -> str | None:
    """The sha256 prefix that the file name promises, or None when it promises none (DeiT III files)."""
    match = _HASH_PREFIX.search(Path(urlparse(url).path).name)
    return match.group(1) if match else None


def fetch_checkpoint(url: str, *, timeout: float = 60.0, progress: bool = False,
                     local_option: str = "pretrained=") -> Path:
    """The local copy of `url`, downloading it on first use; a wrong hash or no network is a DeitError.

    `local_option` is where the caller's user can give a downloaded file instead (a flag such as `--teacher-path`
    on the command line, an argument such as `pretrained=` in Python); the no-network error names it.
    """
    destination = cache_path(url)
    if destination.is_file():
        return destination
    expected = expected_hash_prefix(url)

    def download(tmp_path: str) -> None:
        digest = _download_to(url, tmp_path, timeout=timeout, progress=progress, destination=destination,
                              local_option=local_option)
        if expected and not digest.startswith(expected):
            raise DeitError(f"{url}: sha256 of the download starts with {digest[:len(expected)]}, expected "
                            f"{expected}; the file was discarded (retry, or fetch it by hand to {destination})")

    atomic_write(destination, download)
    return destination


def _download_to(url: str, tmp_path: str, *, timeout: float, progress: bool, destination: Path,
                 local_option: str) -> str:
    sha256 = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp_path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, destination.name) if progress else None
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha256.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        raise DeitError(f"cannot download {url} ({reason}); fetch it by hand (e.g. on a machine with network) and "
                        f"put it at {destination}, or pass the file's path as {local_option}") from error
    return sha256.hexdigest()


def _progress_bar(total: int | None, name: str):  # noqa: ANN202 - tqdm's type is not worth importing
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)
