"""Scheduled nightly evaluations (``python -m platform.nightly``; README "Nightly evaluations")."""
