"""Run a per-worker training loop in this process or on Ray Train (DDP) — the only edge
where training code meets Ray.

A loop is ``loop_fn(config: dict) -> None``: Ray Train's ``train_loop_per_worker``
signature. It reads rank and world size from ``platform.distributed`` (0 / 1 without a
process group), so the same function runs in-process for tests and laptops and as
``TorchTrainer`` workers on a cluster, where Ray sets up the process group (gloo on
CPU, NCCL on GPU). Loops keep their own checkpoints under an absolute run directory and
resume from them, so relaunching a run continues it either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

LoopFn = Callable[[dict[str, Any]], None]


def fit_on_ray_train(
    loop_fn: LoopFn,
    loop_config: dict[str, Any],
    *,
    num_workers: int,
    use_gpu: bool,
    name: str,
    storage_path: Path | str,
    max_failures: int = 0,
) -> Any:
    """Run ``loop_fn(loop_config)`` on ``num_workers`` Ray Train workers; returns Ray's ``Result``.

    Args:
        loop_fn: the per-worker loop; must be importable on workers (defined in a module).
        loop_config: passed to every worker (cloudpickled: plain data and picklable objects).
        num_workers: DDP ranks (``TrainConfig.num_workers``).
        use_gpu: one GPU per worker and NCCL; otherwise CPU and gloo.
        name: the run's name; Ray Train v2 resumes a run relaunched with the same
            ``name`` and ``storage_path``.
        storage_path: absolute directory (shared storage on multi-node clusters).
        max_failures: worker-group restarts Ray may try; each restart resumes from the
            loop's latest checkpoint.
    Raises:
        ray.train.TrainingFailedError: a worker failed (after ``max_failures`` retries).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from platform.cluster import ray_init

    ray_init()  # no-op when already connected (e.g. inside the orchestrator's task)
    trainer = TorchTrainer(
        loop_fn,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    return trainer.fit()


def run_training(
    loop_fn: LoopFn,
    loop_config: dict[str, Any],
    *,
    num_workers: int,
    use_gpu: bool,
    name: str,
    storage_path: Path | str,
    use_ray: bool | None = None,
    max_failures: int = 0,
) -> None:
    """Run the loop in-process when one CPU worker suffices, else on Ray Train.

    Args:
        max_failures: Ray Train worker-group restarts after a lost worker or node (each
            resumes from the loop's latest intact checkpoint); in-process runs are
            restarted by their caller instead (the sweep retries the stage task).
        use_ray: force (True) or forbid (False) Ray Train; None decides: Ray when
            ``num_workers > 1`` or ``use_gpu``.
    """
    if use_ray is None:
        use_ray = num_workers > 1 or use_gpu
    if not use_ray:
        if num_workers > 1:
            raise ValueError(f"num_workers={num_workers} needs Ray Train (use_ray=False was given)")
        loop_fn(loop_config)
        return
    fit_on_ray_train(loop_fn, loop_config, num_workers=num_workers, use_gpu=use_gpu, name=name,
                     storage_path=storage_path, max_failures=max_failures)
