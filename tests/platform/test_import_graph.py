"""No import circles among our modules (lazy imports inside functions count too), and the
sweep's own Ray workers stay free of torch."""

import subprocess
import sys

from platform.orchestration.fingerprint import REPO_ROOT, project_imports


def _modules() -> dict:
    found = {}
    for package in ("platform", "evaluation"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_the_import_graph_has_no_cycles():
    modules = _modules()
    graph = {name: {dep for dep in project_imports(name, path) if dep in modules and "." in dep}
             for name, path in modules.items()}
    done: set = set()

    def visit(name: str, trail: list) -> None:
        if name in trail:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(name):] + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert {"platform.data.manifest", "platform.ldm.train"} <= set(graph)


def test_the_sweeps_actors_and_stage_tasks_never_import_torch():
    """The writer actor and every stage task start a Ray worker process that imports these
    modules; torch costs each of them seconds, and only the stage functions need it."""
    modules = "platform.orchestration.writer, platform.orchestration.stage_task, platform.tracking"
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {modules}; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"
