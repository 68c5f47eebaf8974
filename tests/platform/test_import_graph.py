"""No import circles among our modules (lazy imports inside functions count too)."""

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
