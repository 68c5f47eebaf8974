"""A smoke sweep as a researcher meets it: its terminal output, then the MLflow dashboard
in a real headless Chromium against a real ``mlflow server`` (``python -m platform.dashboard``).

One sweep (two trials named ``lr=1e-4`` / ``lr=2e-4``) feeds every test here. Screenshots
are written to ``$TEST_ARTIFACTS_DIR/dashboard/`` (default ``test-artifacts/dashboard/``
in the repo root): ``runs_view.png``, ``runs_view_shared.png``, ``compare_view.png``,
``sample_grid.png``.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platform.tracking import PARENT_TAG, TrackingStore
from tests.conftest import REPO_ROOT, run_module

pytestmark = pytest.mark.slow

SHOTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts")) / "dashboard"
PROGRESS_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (first_stage|ldm|eval) ")


def _args(work: Path, shards: tuple[Path, Path]) -> list[str]:
    train, test = shards
    return ["platform.sweep", "scale=smoke", "first_stage=identity", "ldm.train.lr=1e-4,2e-4",
            f"paths.work_dir={work}", f"data.train_shards={train}", f"data.eval_shards={test}",
            "cluster.num_cpus=2", "ldm.train.steps=10", "ldm.train.ckpt_every=5", "eval.num_samples=16",
            "eval.kid_subset_size=8"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_shards):
    """The sweep, run once off a TTY (output captured): (work dir, result, args)."""
    work = tmp_path_factory.mktemp("dashboard") / "work"
    args = _args(work, tiny_shards)
    result = run_module(*args, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result, args


def test_off_a_tty_one_progress_line_per_stage_state_change(sweep):
    _, result, _ = sweep
    lines = [line for line in result.stderr.splitlines() if PROGRESS_LINE.match(line)]
    # 2 LDMs + 2 evaluations, each "running" then "done": 8 lines, however long they ran.
    assert len(lines) == 8, lines
    assert sum(line.endswith(": running") for line in lines) == 4
    assert sum(": done in " in line for line in lines) == 4
    assert "pid=" not in result.stdout + result.stderr  # no Ray worker output on the screen
    out = result.stdout
    assert out.count("summary") == 1 and "lr=1e-4" in out and "lr=2e-4" in out
    assert "report:" in out and "#/experiments/" in out and "python -m platform.dashboard" in out


def test_trials_carry_what_comparison_needs(sweep):
    work, _, _ = sweep
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    (parent,) = store.runs("default", "tags.kind = 'sweep'")
    trials = store.runs("default", "tags.kind = 'trial'")
    assert sorted(t.info.run_name for t in trials) == ["lr=1e-4", "lr=2e-4"]
    for trial in trials:
        tags, run_id = trial.data.tags, trial.info.run_id
        assert PARENT_TAG not in tags and tags["sweep_run_id"] == parent.info.run_id  # top level
        assert tags["mlflow.user"] and tags["mlflow.source.name"] == "platform/sweep.py"
        assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
        inputs = store.client.get_run(run_id).inputs.dataset_inputs
        contexts = {i.tags[0].value: i.dataset for i in inputs}
        assert set(contexts) == {"train", "eval"} and contexts["train"].digest == tags["dataset_id"]
        assert contexts["train"].name == "digits" and '"num_samples": 256' in contexts["train"].profile
        assert Path(tags["checkpoint.ldm"]).is_dir() and tags["checkpoint.ldm.step"] == "10"
        (model,) = store.client.search_logged_models([trial.info.experiment_id],
                                                     filter_string=f"source_run_id = '{run_id}'")
        assert model.params == {"path": tags["checkpoint.ldm"], "step": "10"}
        grids = {a.path for a in store.client.list_artifacts(run_id, "samples")}
        assert grids == {"samples/step_00000005.png", "samples/step_00000010.png"}  # every evaluated step
        assert [s for s, _ in store.metric_history(run_id, "eval/fid")] == [5, 10]
    for stage in store.runs("default", "tags.kind = 'stage'"):  # nested under a trial
        assert stage.data.tags[PARENT_TAG] in {t.info.run_id for t in trials}


def test_rerun_on_a_tty_redraws_the_table_in_place(sweep):
    work, _, args = sweep
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    before = len(store.runs("default"))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the sweep, its stdout and stderr on the pty
        os.chdir(REPO_ROOT)
        os.execv(sys.executable, [sys.executable, "-m", *args])
    chunks, deadline = [], time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the pty
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    out = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, out[-3000:]
    assert re.search(r"\x1b\[\d*A", out), out[-2000:]  # cursor up: frames overwrite each other
    assert "sweep running" in out and not any(PROGRESS_LINE.match(line) for line in out.splitlines())
    assert len(store.runs("default")) == before  # reopened, not duplicated


# -- the browser ---------------------------------------------------------------------------

def _chromium() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("Chromium or chromedriver is not installed (Debian: apt-get install chromium "
                    "chromium-driver; `make setup` does it when run as root with apt)")
    pytest.importorskip("selenium", reason="selenium is not installed (it is in pyproject.toml)")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(sweep):
    """``python -m platform.dashboard`` on the sweep's store: (plain URL, shared-view URL)."""
    work, _, _ = sweep
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "platform.dashboard", f"paths.work_dir={work}",
                             "--port", str(port)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            # Stopped with SIGINT below, even when the suite was started with it
                            # ignored (a script's `make test &`), which the child would inherit.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    urls: list[str] = []
    deadline = time.time() + 300
    while len(urls) < 2 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        urls += re.findall(r"http://\S+", line) if "#/experiments/" in line else []
    try:
        assert len(urls) == 2, f"dashboard printed no URLs (exit {proc.poll()})"
        yield urls[0], urls[1], port
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # fail, but leave no dashboard or server behind
            os.killpg(proc.pid, signal.SIGKILL)
            raise


def test_dashboard_refuses_a_taken_port(sweep, dashboard):
    work, _, _ = sweep
    out = run_module("platform.dashboard", f"paths.work_dir={work}", "--port", str(dashboard[2]), timeout=120)
    assert out.returncode == 2 and f"port {dashboard[2]} on 127.0.0.1 is already in use" in out.stderr


@pytest.fixture(scope="module")
def browser():
    chrome, driver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1900,1000"):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(120)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield session
    session.quit()


def _wait_for(browser, predicate, what: str, timeout: float = 120.0):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The React UI re-renders while loading: an element found a moment ago can go stale, which
    # means "not yet", not failure.
    return WebDriverWait(browser, timeout, poll_frequency=0.5,
                         ignored_exceptions=(StaleElementReferenceException,)).until(predicate, message=what)


def _text(browser) -> str:
    return browser.find_element("tag name", "body").text


def _close_assistant(browser) -> None:
    """MLflow 3.17 opens an "Assistant" side panel; close it so screenshots show the table."""
    for button in browser.find_elements("css selector", "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            return


def test_runs_view_lists_every_trial_with_its_fid(sweep, dashboard, browser):
    work, _, _ = sweep
    plain, shared, _ = dashboard
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    fids = {t.info.run_name: t.data.metrics["eval/fid"] for t in store.runs("default", "tags.kind = 'trial'")}

    browser.get(plain)  # the printed link: training runs, even in a fresh browser
    _wait_for(browser, lambda b: all(name in _text(b) for name in fids), "trial rows in the runs view")
    _close_assistant(browser)
    assert "Training runs" in _text(browser)
    browser.save_screenshot(str(SHOTS / "runs_view.png"))

    browser.get(shared)  # the sweep's saved view: its trials ranked by FID, metrics as columns
    _wait_for(browser, lambda b: "eval/fid" in _text(b) and all(n in _text(b) for n in fids), "FID column")
    _close_assistant(browser)
    text = _text(browser)
    for name, fid in fids.items():
        assert f"{fid:.4f}"[:6] in text, (name, fid)
    assert "sweep default" not in text  # only trials in this view
    assert "Sort: eval/fid" in text  # ranked by FID
    browser.save_screenshot(str(SHOTS / "runs_view_shared.png"))


def test_compare_view_plots_fid_and_the_sample_grid_opens(sweep, dashboard, browser):
    from selenium.webdriver.common.keys import Keys

    work, _, _ = sweep
    base = dashboard[0].split("/#/")[0]
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    trials = store.runs("default", "tags.kind = 'trial'")
    exp_id = trials[0].info.experiment_id
    ids = ",".join(f'"{t.info.run_id}"' for t in trials)
    # What "Compare" opens after ticking the trials in the runs view.
    browser.get(f"{base}/#/compare-runs?runs=[{ids}]&experiments=[\"{exp_id}\"]")
    _wait_for(browser, lambda b: "Parallel Coordinates Plot" in _text(b), "the compare view")
    _close_assistant(browser)
    metrics = browser.find_elements("css selector", "input[role='combobox']")[1]  # "Metrics:" chooser
    metrics.click()
    metrics.send_keys("eval/fid")
    metrics.send_keys(Keys.ENTER)
    metrics.send_keys(Keys.ESCAPE)
    _wait_for(browser, lambda b: any(t.text == "eval/fid" for t in b.find_elements("css selector", "svg text")),
              "an eval/fid axis in the parallel-coordinates plot")
    assert all(t.info.run_name in _text(browser) for t in trials)
    browser.save_screenshot(str(SHOTS / "compare_view.png"))

    run = trials[0]
    browser.get(f"{base}/#/experiments/{exp_id}/runs/{run.info.run_id}/artifacts/samples/step_00000010.png")
    # The artifact viewer shows the PNG as a blob: image, 4 x 4 samples of 32 px.
    _wait_for(browser, lambda b: any((img.get_attribute("src") or "").startswith("blob:")
                                     and b.execute_script("return arguments[0].naturalWidth", img) == 128
                                     for img in b.find_elements("tag name", "img")), "the sample grid image")
    assert "samples/step_00000010.png" in _text(browser)
    _close_assistant(browser)
    browser.save_screenshot(str(SHOTS / "sample_grid.png"))
