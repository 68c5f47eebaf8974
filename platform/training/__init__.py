"""Training infrastructure shared by the first-stage and LDM loops.

- ``platform.training.ray_train``: ``fit_on_ray_train`` / ``run_training`` — run a
  ``loop_fn(config)`` in this process or on Ray Train's ``TorchTrainer`` (DDP).
- ``platform.training.optim``: learning-rate scaling by global batch, Adam builders.
- ``platform.training.precision``: the autocast context (bf16 on GPU, fp32 on CPU).
- ``platform.training.parallel``: DDP wrapping and ``no_sync`` for gradient accumulation.
- ``platform.training.paths``: ``with_absolute_paths`` (workers start elsewhere).
- ``platform.training.resume``: data position (epoch, batch) and an endless, resumable
  batch stream over ``platform.data.loader.make_loader``.
"""
