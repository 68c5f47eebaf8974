"""Where shards live: a local directory or a URL prefix (http, https, s3, pipe:).

Shared by the manifest and the shard reader, so neither imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a remote URL (http, https, s3, pipe:) rather than a local path."""
    text = str(location)
    return "://" in text or text.startswith("pipe:")


def join(location: str | os.PathLike, name: str) -> str:
    """``location/name`` for a local directory or a URL prefix."""
    text = str(location)
    return text.rstrip("/") + "/" + name if is_url(text) else str(Path(text) / name)


def open_url(url: str) -> IO[bytes]:
    """A readable binary stream for a local path, ``file://``, ``http(s)://`` (curl) or ``s3://`` (aws cli)."""
    if not is_url(url):
        return open(url, "rb")
    from webdataset.gopen import gopen

    if url.startswith("s3://"):
        # webdataset has no s3 handler of its own; its documented recipe is a pipe to the aws cli.
        url = f"pipe:aws s3 cp {url} -"
    return gopen(url, "rb")
