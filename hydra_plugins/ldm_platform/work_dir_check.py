"""Hydra callback: refuse an unwritable ``paths.work_dir`` before Hydra writes into it.

Hydra creates its output directory under ``paths.work_dir`` before any platform code
runs, so an unwritable one used to end in a Hydra traceback. This check runs first
(``on_run_start`` / ``on_multirun_start``) and exits with code 2 and a message naming
the setting (``SystemExit`` passes through Hydra's error reporting untouched). Imported
during Hydra's plugin scan: no ``from __future__ import annotations`` here.
"""

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_work_dir(work_dir: "str | Path") -> "str | None":
    """Create ``work_dir`` and write a probe file in it; the reason it cannot be used, or None."""
    path = Path(work_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return (f"paths.work_dir={work_dir} is not a writable directory ({error.strerror or error}); "
                "choose another with paths.work_dir=DIR")
    return None


def check_work_dir(work_dir: str) -> None:
    """Exit 2 with the reason when ``work_dir`` cannot be used (before Hydra writes into it)."""
    problem = unwritable_work_dir(work_dir)
    if problem:
        print(f"cannot start: {problem}", file=sys.stderr)
        raise SystemExit(2)


class WorkDirCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_work_dir(str(config.paths.work_dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_work_dir(str(config.paths.work_dir))
