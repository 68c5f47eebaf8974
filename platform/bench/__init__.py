"""Benchmarks: measured figures printed side by side, ratios within one run."""
