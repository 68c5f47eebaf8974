"""Where a run stands in its data and its random streams, so a resumed run continues
exactly as if it had never stopped (bit for bit on CPU)."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from platform.distributed import is_distributed, rank, world_size


class ResumeConfigError(ValueError):
    """A run directory holds work done under a different semantic config than the one given."""


@dataclass(frozen=True)
class DataPosition:
    """``batch`` batches of epoch ``epoch`` have been consumed by this rank."""

    epoch: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def stream_batches(
    make_epoch: Callable[[int, int], Iterable[Any]], start: DataPosition = DataPosition()
) -> Iterator[tuple[Any, DataPosition]]:
    """Endless ``(batch, position after it)`` over epochs, starting at ``start``.

    Args:
        make_epoch: ``(epoch, skip_batches) -> iterable of batches`` for that epoch, e.g.
            ``lambda e, s: make_loader(dir, batch_size=..., epoch=e, skip_batches=s, ...)``.
        start: the position saved in the checkpoint being resumed.
    Ranks iterate independently: steps, not epochs, bound the loop, so shards of unequal
    length never make DDP ranks wait on each other.
    """
    epoch, skip = start.epoch, start.batch
    while True:
        consumed = skip
        for batch in make_epoch(epoch, skip):
            consumed += 1
            yield batch, DataPosition(epoch, consumed)
        if consumed == 0:
            raise RuntimeError(f"the data loader yielded no batch in epoch {epoch}: too few images per rank?")
        epoch, skip = epoch + 1, 0


def gather_positions(position: DataPosition, device: torch.device) -> list[dict[str, int]]:
    """Every rank's position (rank order), for rank 0 to save in the checkpoint."""
    if not is_distributed():
        return [position.to_dict()]
    mine = torch.tensor([position.epoch, position.batch], dtype=torch.int64, device=device)
    every = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(every, mine)
    return [DataPosition(int(e), int(b)).to_dict() for e, b in (t.tolist() for t in every)]


def my_position(saved: Sequence[dict[str, int]] | None) -> DataPosition:
    """This rank's saved position; rank 0's when the world size changed (approximate)."""
    if not saved:
        return DataPosition()
    entry = saved[rank()] if len(saved) == world_size() else saved[0]
    return DataPosition(**entry)


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states as JSON-able data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA states only where the device count matches)."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's ``rng_state()`` (rank order), for rank 0 to save; a collective call."""
    mine = rng_state()
    if not is_distributed():
        return [mine]
    every: list[Any] = [None] * world_size()
    dist.all_gather_object(every, mine)
    return every


def restore_my_rng(saved: Sequence[dict[str, Any]] | None) -> bool:
    """Restore this rank's saved RNG states; False (nothing restored) for checkpoints without
    them or written by a different number of ranks, whose streams cannot be continued."""
    if not saved or len(saved) != world_size():
        return False
    set_rng_state(saved[rank()])
    return True


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            if key in old:  # a field the saved config predates cannot be compared
                out += _differences(old[key], new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_same_semantics(saved_cfg: Any, cfg: Any, stage: str, where: Path | str, *,
                         allow_more_steps: bool) -> None:
    """Refuse to continue (or reuse) work whose semantic config differs from ``cfg``.

    Args:
        saved_cfg: the resolved config stored with the checkpoint or result.
        cfg: the config of this launch.
        stage: whose semantic fields count (``platform.config.semantics``).
        where: the run directory, named in the error.
        allow_more_steps: resuming may raise ``<stage>.train.steps`` (never lower it): no
            schedule depends on the total, so this equals an uninterrupted longer run.
    Raises:
        ResumeConfigError: naming each changed field, old -> new, and what to do.
    """
    from platform.config.semantics import semantic_config

    changed = _differences(semantic_config(saved_cfg, stage), semantic_config(cfg, stage))
    if allow_more_steps:  # a longer budget continues the run as an uninterrupted longer run
        steps = f"{stage}.train.steps: "
        changed = [c for c in changed if not (c.startswith(steps) and _raised(c[len(steps):]))]
    if changed:
        raise ResumeConfigError(
            f"{where} was trained with a different {stage} config ({'; '.join(changed)}); "
            f"resuming would mix two experiments. Use a new run directory (paths.work_dir) for the "
            f"new config, or delete {where} to retrain it.")


def _raised(change: str) -> bool:
    old, new = (int(v) for v in change.split(" -> "))
    return new >= old


def saved_config(checkpoint: Path | str) -> dict[str, Any]:
    """The resolved config a checkpoint was written under (its ``meta.config``), without its tensors."""
    from platform.checkpoint import META_FILE

    return json.loads((Path(checkpoint) / META_FILE).read_text())["meta"]["config"]
