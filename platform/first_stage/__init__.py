"""Stage 1: first-stage autoencoders (paper §3.1) — KL or VQ, f ∈ {1, 2, 4, 8, 16, 32}.

- ``model``: ``FirstStage`` (encode / decode / reconstruct) and ``build_first_stage``.
- ``discriminator``: the PatchGAN discriminator.
- ``loss``: L1 + LPIPS + KL / codebook + adaptive-weight hinge GAN.
- ``train``: ``train_first_stage`` (in-process or Ray Train) and its per-worker loop.
- ``load``: ``load_first_stage`` for the LDM stage (frozen, with ``scale_factor``).
- ``evaluate``: reconstruction metrics and grid on the held-out split.
"""
