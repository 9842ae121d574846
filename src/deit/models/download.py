"""Fetch an official checkpoint once into the torch hub cache, checking the sha256 prefix in its file name."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch

from deit.errors import DeitError

# Official file names end in `-<first hex digits of the sha256>.pth` (torch.hub's convention).
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


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


def fetch_checkpoint(url: str, *, progress: bool = False, local_option: str = "pretrained=") -> Path:
    """The local copy of `url`, downloading it on first use; a wrong hash or no network is a DeitError.

    `local_option` is where the caller's user can give a downloaded file instead (a flag such as `--teacher-path`
    on the command line, an argument such as `pretrained=` in Python); the no-network error names it.
    """
    destination = cache_path(url)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    # torch.hub's downloader writes a temporary file beside `destination`, checks the sha256 prefix, then moves
    # it into place (removing it on any failure), so the cache never holds a partial or wrong file.
    try:
        torch.hub.download_url_to_file(url, str(destination), hash_prefix=expected_hash_prefix(url), progress=progress)
    except RuntimeError as error:  # torch.hub's only RuntimeError here is the hash check
        raise DeitError(
            f"{url}: sha256 of the download does not match its file name ({error}); the file was "
            f"discarded (retry, or fetch it by hand to {destination})"
        ) from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        raise DeitError(
            f"cannot download {url} ({reason}); fetch it by hand (e.g. on a machine with network) and "
            f"put it at {destination}, or pass the file's path as {local_option}"
        ) from error
    return destination
