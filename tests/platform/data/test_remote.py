"""Shards over http:// (webdataset's curl pipe), as a remote bucket or file server serves them."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from platform.data.loader import make_loader, read_range
from platform.data.manifest import load_manifest


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_root(tiny_shards):
    """The tiny test split served by a real HTTP server on localhost."""
    handler = functools.partial(_QuietHandler, directory=str(tiny_shards[1]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset reads http:// through curl")
def test_http_shards_match_local(http_root, tiny_shards):
    local = tiny_shards[1]
    assert load_manifest(http_root) == load_manifest(local)
    remote_keys = [k for b in make_loader(http_root, batch_size=16, seed=4) for k in b["key"]]
    local_keys = [k for b in make_loader(local, batch_size=16, seed=4) for k in b["key"]]
    assert remote_keys == local_keys and len(remote_keys) == 64
    remote_images, remote_labels = read_range(http_root, 10, 20)
    local_images, local_labels = read_range(local, 10, 20)
    assert remote_images.equal(local_images) and remote_labels.equal(local_labels)
