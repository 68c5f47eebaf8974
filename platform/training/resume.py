"""Where a run stands in its data, so a resumed run continues instead of repeating it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist

from platform.distributed import is_distributed, rank, world_size


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
