"""Evaluation for the LDM platform: offline Inception/LPIPS assets, FID / KID /
precision-recall / IS, reconstruction metrics, cached references and Ray workers.

Pipeline (edm2's shape, STYLE.md §12): detector → mergeable statistics → pure metrics.
Entry points: ``evaluation.workers.evaluate``, ``evaluation.reconstruction``,
``evaluation.lpips.LPIPS``, and ``python -m evaluation``.
"""
