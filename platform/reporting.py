"""How training and evaluation code reports: metrics, images, artifacts, progress.

Stages receive a ``Reporter`` and never import a tracking backend. Every reporter
logs from rank 0 only, so training loops call it unconditionally. ``LocalReporter``
prints and writes files (tests, debugging); ``platform.tracking.MlflowReporter``
sends the same calls to an MLflow run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
from PIL import Image

from platform.distributed import is_main


class Reporter(Protocol):
    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """Scalars at a training step, e.g. ``{"train/loss": 0.1}``."""

    def image(self, image: np.ndarray, artifact_file: str) -> None:
        """A uint8 (H, W, 3) image saved as PNG at ``artifact_file`` (e.g. ``samples/step_100.png``)."""

    def artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """A file or directory copied under ``artifact_path``."""

    def progress(self, step: int, total: int) -> None:
        """Where the stage stands; drives the sweep's live progress table."""


class LocalReporter:
    """Prints metrics and writes images/artifacts under ``out_dir`` (no tracking server)."""

    def __init__(self, out_dir: Path | str, *, quiet: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.quiet = quiet
        self.history: list[tuple[int, dict[str, float]]] = []

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        if not is_main():
            return
        values = {k: float(v) for k, v in values.items()}
        self.history.append((step, values))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if not self.quiet:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"[step {step}] {shown}", file=sys.stderr, flush=True)

    def image(self, image: np.ndarray, artifact_file: str) -> None:
        if not is_main():
            return
        path = self.out_dir / "artifacts" / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)

    def artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        if not is_main():
            return
        local_path = Path(local_path)
        target = self.out_dir / "artifacts" / (artifact_path or "") / local_path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if local_path.is_dir():
            shutil.copytree(local_path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(local_path, target)

    def progress(self, step: int, total: int) -> None:
        pass
