"""Shared fixtures: a real local Ray cluster, the repo root, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Caches, model stores and tool config the suite may touch, all pointed at one private directory
# per session (XDG_CONFIG_HOME: Chromium keeps its crash-report settings there, not in HOME).
_CACHE_VARIABLES = ("LDM_EVAL_CACHE", "TORCH_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME", "MPLCONFIGDIR")
_OFFLINE_VARIABLES = {"LDM_ASSETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def pytest_configure(config) -> None:
    """A hermetic session: no user cache is read or written and nothing is downloaded.

    Set before any test (or Ray worker, or subprocess, which inherit the environment) runs,
    so results never depend on what this machine happens to have cached. Weights come from
    the offline sources (DESIGN.md §3), prepared once per session in the private cache.
    """
    import shutil
    import tempfile
    import uuid

    root = Path(tempfile.mkdtemp(prefix="ldm-test-caches-"))
    config._ldm_cache_root = root
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    for name in _CACHE_VARIABLES:
        os.environ[name] = str(root / name.lower())
    os.environ.update(_OFFLINE_VARIABLES)
    # Ray 2.60 turns token auth on for every new local cluster and, given no token, reads or
    # writes ~/.ray/auth_token; a session token in the environment keeps HOME out of it.
    os.environ["RAY_AUTH_TOKEN"] = uuid.uuid4().hex

    from platform.config.compose import remember_compositions

    remember_compositions()  # the suite composes the same configs hundreds of times


def pytest_collection_modifyitems(session, config, items) -> None:
    """Files with slow tests first, each file's tests kept together and in order.

    ``make test`` hands whole files to two pytest-xdist workers in this order: the long
    end-to-end files start at once and the many short files fill in behind them, instead of
    one worker finishing the suite alone on the last long file (a rough longest-first order:
    slow files are not ordered among themselves).
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: file order kept within


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures the fault and reliability tests measured, in every run's output.

    They travel as the tests' ``figures`` user properties, which pytest-xdist sends back from
    its workers (captured stdout of a passing test is never shown there).
    """
    lines = [f"{report.nodeid.split('::')[-1]}: {value}"
             for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call"
             for name, value in getattr(report, "user_properties", ()) if name == "figures"]
    if lines:
        terminalreporter.section("measured figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)


@pytest.fixture
def figures(record_property):
    """``figures(text)``: report a measured figure in the run's "measured figures" summary."""
    return lambda text: record_property("figures", text)


@pytest.fixture(scope="session")
def cache_root(pytestconfig) -> Path:
    """The session's private cache directory (``$LDM_EVAL_CACHE``, ``$TORCH_HOME``... live under it)."""
    return pytestconfig._ldm_cache_root


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs) shared by the whole session."""
    import ray

    from platform.cluster import ray_init

    os.environ.pop("RAY_ADDRESS", None)  # never join a user's cluster from tests
    ray_init(num_cpus=2, object_store_memory=300 * 1024**2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def _migrated_sqlite_store(tmp_path_factory) -> Path:
    """An empty SQLite MLflow store with every schema migration applied, made once."""
    from platform.tracking import TrackingStore

    path = tmp_path_factory.mktemp("mlflow_schema") / "mlflow.db"
    TrackingStore(f"sqlite:///{path}").client.search_experiments()  # creates and migrates the tables
    return path


@pytest.fixture
def new_sqlite_store(_migrated_sqlite_store):
    """``new_sqlite_store(path)``: an empty SQLite MLflow store at ``path``; returns its URI.

    A copy of one migrated per session: MLflow migrates a new SQLite file through its
    whole alembic history, seconds per store, which tests that only use a store need not
    pay each time. Tests of creating a store (test_tracking.py, the sweeps) start from none.
    """
    import shutil

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_sqlite_store, path)
        return f"sqlite:///{path}"

    return make


def run_module(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from the repo root, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


# --- data fixtures (platform.data) -------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> tuple[Path, Path]:
    """(train_dir, test_dir): scikit-learn digits as 32x32 RGB shards, 256 train / 64 test samples.

    Built in-process with the same function as ``python -m platform.data build digits``;
    64 samples per shard, so the train split has 4 shards.
    """
    from platform.data.build import build_dataset
    from platform.data.sources import digits

    root = tmp_path_factory.mktemp("tiny_shards")
    for split, limit in (("train", 256), ("test", 64)):
        build_dataset(digits(split), root / split, size=32, samples_per_shard=64, limit=limit, progress=False)
    return root / "train", root / "test"


@pytest.fixture(scope="session")
def fashion_shards(tmp_path_factory) -> tuple[Path, Path]:
    """(train_dir, test_dir): the first 512 train / 256 test Fashion-MNIST images, 32x32 RGB.

    Skips when the Debian package ``dataset-fashion-mnist`` is not installed.
    """
    from platform.data.build import build_dataset
    from platform.data.sources import FASHION_MNIST_DIR, fashion_mnist

    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("fashion_shards")
    for split, limit in (("train", 512), ("test", 256)):
        build_dataset(fashion_mnist(split), root / split, size=32, samples_per_shard=128, limit=limit,
                      progress=False)
    return root / "train", root / "test"
