"""Stage 2: latent diffusion models (Rombach et al. 2022, §3.2–3.3).

Files, one job each: ``unet`` (denoiser presets), ``text_encoders`` / ``conditioning``
(τθ), ``model`` (τθ + εθ), ``diffusion`` (schedule, loss), ``sampling`` (DDIM/DDPM,
guidance, per-sample seeds), ``ema``, ``latent_cache``, ``pipeline`` (seeds → pixels),
``train`` (the loop), ``load`` (checkpoint → pipeline), ``evaluate`` (sample source,
FID/KID/PR per step count).
"""
