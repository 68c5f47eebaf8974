"""The streaming tar reader agrees with tarfile on the formats other writers produce."""

from __future__ import annotations

import io
import tarfile

import pytest

from platform.data.tarstream import TarFormatError, iter_members


def _archive(fmt: int, names: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        directory = tarfile.TarInfo("adir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for i, name in enumerate(names):
            data = bytes([i]) * (700 + i)  # crosses a block boundary
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_match_tarfile(fmt):
    long_dir = "d" * 120 if fmt != tarfile.USTAR_FORMAT else "sub"
    names = ["000.png", "000.cls", f"{long_dir}/001.png", "ünï/002.txt"]
    data = _archive(fmt, names)
    got = list(iter_members(io.BytesIO(data)))
    assert [name for name, _ in got] == names
    assert [payload for _, payload in got] == [bytes([i]) * (700 + i) for i in range(len(names))]


def test_truncation_and_damage_are_errors():
    data = _archive(tarfile.USTAR_FORMAT, ["a.png", "b.png"])
    with pytest.raises(TarFormatError, match="cut short"):
        list(iter_members(io.BytesIO(data[:1200])))
    with pytest.raises(TarFormatError, match="without an end-of-archive marker"):
        list(iter_members(io.BytesIO(data[:512 * 7])))  # dir, a.png and b.png, each header + 2 blocks
    damaged = bytearray(data)
    damaged[512 + 10] ^= 1  # a.png's header name
    with pytest.raises(TarFormatError, match="checksum mismatch at byte 512"):
        list(iter_members(io.BytesIO(bytes(damaged))))
