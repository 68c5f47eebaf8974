"""Self-describing checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint is a directory ``<root>/step-<8 digits>/`` holding ``tensors.safetensors``
and ``meta.json``, then ``digest.json`` (the sha256 of each other file), written last:
it is the completion marker and the basis of the checkpoint's content id. Nested state (module and optimiser state dicts, with their int keys)
is encoded as a JSON tree whose tensor leaves point into the safetensors file, so
loading never unpickles anything. Directories are written under a temporary name and
renamed when complete: a crash never leaves a checkpoint that looks finished.

torch is imported only where tensors are written or read: the sweep's orchestration
(stage records, cache checks) lists and verifies checkpoints in processes that never
touch a tensor, and torch's import costs them seconds per Ray worker.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from safetensors import SafetensorError

from platform.hashing import sha256_file, sha256_json

if TYPE_CHECKING:
    import torch

_PREFIX = "step-"
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
DIGEST_FILE = "digest.json"


class CheckpointError(Exception):
    """A checkpoint directory that is missing, incomplete or does not match its digest."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"checkpoint {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous().clone()
        return {"t": path}
    if isinstance(obj, Mapping):
        return {"d": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        tag = "l" if isinstance(obj, list) else "u"
        return {tag: [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")


def _decode(node: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    (tag, value), = node.items()
    if tag == "t":
        return tensors[value]
    if tag == "d":
        return {k: _decode(v, tensors) for k, v in value}
    if tag == "l":
        return [_decode(v, tensors) for v in value]
    if tag == "u":
        return tuple(_decode(v, tensors) for v in value)
    return value


def save_checkpoint(
    root: Path | str,
    step: int,
    states: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    keep_last: int | None = None,
) -> Path:
    """Write ``states`` (name -> state dict) and JSON ``meta`` as ``root/step-NNNNNNNN``.

    Args:
        root: directory holding this run's checkpoints.
        step: training step the checkpoint belongs to.
        states: e.g. ``{"model": net.state_dict(), "opt": opt.state_dict()}``.
        meta: JSON-serialisable facts (resolved config, scale_factor, data position).
        keep_last: delete older checkpoints beyond this many (None keeps all).
    """
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors: dict[str, torch.Tensor] = {}
        tree = {name: _encode(state, name, tensors) for name, state in states.items()}
        save_file(tensors, str(tmp / TENSORS_FILE))
        (tmp / META_FILE).write_text(json.dumps({"step": step, "meta": dict(meta), "states": tree}))
        _fsync_files(tmp)
        # Last, after every other file is durable: its presence means "complete".
        files = {file.name: sha256_file(file) for file in sorted(tmp.iterdir())}
        (tmp / DIGEST_FILE).write_text(json.dumps({"files": files}, indent=1, sort_keys=True))
        _fsync_files(tmp, only=DIGEST_FILE)
    except (OSError, SafetensorError) as error:  # a full disk or quota: leave nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(final, f"could not be written ({error}); free space under "
                                     f"{root} or point paths.work_dir elsewhere, then rerun to resume") from error
    if final.exists():  # re-saving a step: swap, then drop the old copy
        trash = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, final)
    if keep_last is not None:
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    return final


def checkpoint_path(root: Path | str, step: int) -> Path:
    """Where ``save_checkpoint(root, step, ...)`` puts (or put) that step's checkpoint."""
    return Path(root) / f"{_PREFIX}{step:08d}"


def _fsync_files(directory: Path, only: str | None = None) -> None:
    for file in directory.iterdir():
        if only is None or file.name == only:
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def list_checkpoints(root: Path | str) -> list[Path]:
    """Complete checkpoints (those with their ``digest.json``) under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / DIGEST_FILE).is_file())


def verify_checkpoint(path: Path | str) -> str:
    """Check every file of a checkpoint against its ``digest.json``; return its content id.

    The content id is the sha256 (hex) of the digest itself, so it changes when any file
    changes and does not depend on where the checkpoint lies.

    Raises:
        CheckpointError: the directory or its digest is missing, a listed file is missing
            or its sha256 differs, or a file is present that the digest does not list.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(path, "does not exist")
    try:
        files = json.loads((path / DIGEST_FILE).read_text())["files"]
    except FileNotFoundError:
        raise CheckpointError(path, f"has no {DIGEST_FILE}: it was never completed") from None
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(path, f"{DIGEST_FILE} is unreadable ({error})") from None
    present = {p.name for p in path.iterdir() if p.name != DIGEST_FILE}
    missing, extra = sorted(set(files) - present), sorted(present - set(files))
    if missing:
        raise CheckpointError(path, f"missing {', '.join(missing)}")
    if extra:
        raise CheckpointError(path, f"holds files its digest does not list: {', '.join(extra)}")
    for name, expected in sorted(files.items()):
        if sha256_file(path / name) != expected:
            raise CheckpointError(path, f"{name} does not match its recorded sha256 (damaged or edited)")
    return sha256_json(files)


def latest_checkpoint(root: Path | str) -> Path | None:
    """The newest complete checkpoint under ``root`` whose bytes match its digest, or None.

    A checkpoint damaged after it was completed (a crash before the page cache reached
    the disk, a node lost mid-copy) is skipped with a warning in favour of the previous
    one, so a restarted run resumes instead of failing on it.
    """
    for path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            print(f"warning: skipping damaged {error}", file=sys.stderr, flush=True)
            continue
        return path
    return None


def load_checkpoint(path: Path | str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Read a checkpoint directory; returns ``(states, meta, step)`` with CPU tensors.

    Raises ``CheckpointError`` when the directory is not a complete checkpoint (use
    ``verify_checkpoint`` first to also check the bytes).
    """
    from safetensors.torch import load_file

    path = Path(path)
    for name in (META_FILE, TENSORS_FILE, DIGEST_FILE):
        if not (path / name).is_file():
            raise CheckpointError(path, f"is not a complete checkpoint (no {name})")
    doc = json.loads((path / META_FILE).read_text())
    tensors = load_file(str(path / TENSORS_FILE))
    states = {name: _decode(node, tensors) for name, node in doc["states"].items()}
    return states, doc["meta"], int(doc["step"])
