"""Sweep orchestration: trial plans, the stage graph on Ray, progress and summaries."""
