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


def check_work_dir(work_dir: str) -> None:
    """Create ``work_dir`` and write a probe file in it, or exit 2 saying what to do."""
    path = Path(work_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        print(f"cannot start: paths.work_dir={work_dir} is not a writable directory "
              f"({error.strerror or error}); choose another with paths.work_dir=DIR", file=sys.stderr)
        raise SystemExit(2) from None


class WorkDirCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_work_dir(str(config.paths.work_dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_work_dir(str(config.paths.work_dir))
