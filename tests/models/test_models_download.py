"""`pretrained=True`: one hashed download into the torch hub cache, reused after; clear errors when it fails."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from deit.errors import DeitError
from deit.models import create_model, registry

NAME = "deit_tiny_patch16_224"
SMALL = dict(img_size=32, patch_size=8, depth=2, num_classes=10)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served folder, request log) of an HTTP server on 127.0.0.1 only."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere must not leak in
    assert Path(torch.hub.get_dir()) == tmp_path / "torch_home" / "hub"
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _point_registry_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    spec = registry.get_model_spec(NAME)
    monkeypatch.setitem(registry._REGISTRY, NAME, dataclasses.replace(spec, url=url))


def _publish(served: Path, *, correct_hash: bool) -> tuple[str, dict[str, torch.Tensor]]:
    """An official-style file `name-<sha256 prefix>.pth` in `served`; returns its name and weights."""
    weights = create_model(NAME, **SMALL).state_dict()
    staging = served / "staging.pth"
    torch.save({"model": weights}, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    prefix = digest[:8] if correct_hash else ("0" if digest[0] != "0" else "1") + digest[1:8]
    file_name = f"{NAME}-{prefix}.pth"
    staging.rename(served / file_name)
    return file_name, weights


def test_download_checks_hash_caches_and_reuses(file_server, hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, served, requests = file_server
    file_name, weights = _publish(served, correct_hash=True)
    _point_registry_at(monkeypatch, base_url + file_name)

    model = create_model(NAME, pretrained=True, **SMALL)
    torch.testing.assert_close(model.state_dict(), weights)
    assert (hub_dir / file_name).is_file()
    assert requests == [f"/{file_name}"]

    again = create_model(NAME, pretrained=True, **SMALL)  # from the cache: no second request
    torch.testing.assert_close(again.state_dict(), weights)
    assert requests == [f"/{file_name}"]
    assert sorted(p.name for p in hub_dir.iterdir()) == [file_name]


def test_wrong_hash_is_refused_and_nothing_is_cached(
    file_server, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served, requests = file_server
    file_name, _ = _publish(served, correct_hash=False)
    _point_registry_at(monkeypatch, base_url + file_name)
    with pytest.raises(DeitError) as caught:
        create_model(NAME, pretrained=True, **SMALL)
    message = str(caught.value)
    assert file_name in message and "sha256" in message and "discarded" in message and "\n" not in message
    assert not hub_dir.exists() or list(hub_dir.iterdir()) == []  # no file, no temp file left behind
    assert len(requests) == 1


def test_offline_error_names_url_and_where_to_put_the_file(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{NAME}-a1311bcf.pth"
    _point_registry_at(monkeypatch, url)
    with pytest.raises(DeitError) as caught:
        create_model(NAME, pretrained=True, **SMALL)
    message = str(caught.value)
    assert f"cannot download {url}" in message
    assert str(hub_dir / f"{NAME}-a1311bcf.pth") in message and "\n" not in message


def test_missing_file_on_server_is_a_clear_error(file_server, hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, _, _ = file_server
    _point_registry_at(monkeypatch, base_url + f"{NAME}-a1311bcf.pth")
    with pytest.raises(DeitError, match=r"cannot download .*\(HTTP 404 "):
        create_model(NAME, pretrained=True, **SMALL)


def test_a_file_placed_by_hand_is_used(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the offline message tells users to do: put the release file into the cache folder.
    _point_registry_at(monkeypatch, f"http://127.0.0.1:9/{NAME}-a1311bcf.pth")
    weights = create_model(NAME, **SMALL).state_dict()
    hub_dir.mkdir(parents=True)
    torch.save({"model": weights}, hub_dir / f"{NAME}-a1311bcf.pth")
    model = create_model(NAME, pretrained=True, **SMALL)
    torch.testing.assert_close(model.state_dict(), weights)


def test_registry_urls_are_the_official_release() -> None:
    from deit.models.download import expected_hash_prefix

    urls = {name: registry.get_model_spec(name).url for name in registry.list_models()}
    assert all(url and url.startswith("https://dl.fbaipublicfiles.com/deit/") for url in urls.values())
    assert expected_hash_prefix(urls["deit_base_distilled_patch16_384"]) == "d0272ac0"
    assert expected_hash_prefix(urls["deit3_base_patch16_224"]) is None  # DeiT III names carry no hash
