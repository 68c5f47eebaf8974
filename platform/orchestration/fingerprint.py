"""Code fingerprints: the code and libraries a stage's numbers come from (DESIGN.md §6).

A stage's fingerprint holds the sha256 of every project module its result depends on
(found by following imports, the lazy ones inside functions too, from the stage's entry
modules), the versions of the libraries that shape its numbers and, for evaluation, the
detector weights' sha256. It enters the stage key, so a change to the LDM loss re-runs
the LDM and its evaluations, and a change to a metric re-runs evaluations only.

Modules that cannot change a number (tracking, progress, orchestration, config plumbing:
config *values* are in the key already) are not followed; ``NOT_NUMERIC`` lists them.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
from pathlib import Path
from typing import Any, Optional

from platform.config.schema import Stage
from platform.hashing import sha256_file, sha256_json

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("platform", "evaluation")  # our top-level packages; everything else is a library

ENTRY_MODULES: dict[str, tuple[str, ...]] = {
    Stage.first_stage.value: ("platform.first_stage.train",),
    Stage.ldm.value: ("platform.ldm.train",),
    Stage.eval.value: ("platform.ldm.evaluate", "evaluation.workers", "evaluation.sources"),
}
LIBRARIES: dict[str, tuple[str, ...]] = {
    Stage.first_stage.value: ("torch", "diffusers", "numpy", "lpips"),
    Stage.ldm.value: ("torch", "diffusers", "numpy", "transformers"),
    Stage.eval.value: ("torch", "diffusers", "numpy", "scipy"),
}
# Modules (and packages, by prefix) whose changes never change a stage's numbers.
NOT_NUMERIC = (
    "platform",  # the stdlib shim in platform/__init__.py
    "platform.reporting",
    "platform.tracking",
    "platform.redaction",
    "platform.cluster",
    "platform.orchestration",
    "platform.config",
    "platform.bench",
    "evaluation.cli",
    "evaluation.report",
)
# Per stage: code a stage runs that its *result* (what later stages consume) does not
# depend on. LDM sample grids are progress pictures; a first stage's reconstruction
# metrics measure its checkpoint (recorded with the commit that measured them) and a
# change to a metric must not retrain the autoencoder.
NOT_IN_RESULT: dict[str, tuple[str, ...]] = {
    Stage.first_stage.value: ("platform.first_stage.evaluate",),
    Stage.ldm.value: ("platform.ldm.pipeline", "platform.ldm.held_out"),
    Stage.eval.value: (),
}


def _module_file(name: str) -> Optional[Path]:
    base = REPO_ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _skipped(name: str, extra: tuple[str, ...] = ()) -> bool:
    return any(name == skip or (skip != "platform" and name.startswith(skip + "."))
               for skip in NOT_NUMERIC + extra)


def project_imports(module: str, path: Path) -> set[str]:
    """Project modules ``path`` imports anywhere (top level or inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # kept only if a module
    return {name for name in found if name.split(".")[0] in PACKAGES and _module_file(name) is not None}


@functools.lru_cache(maxsize=None)
def module_closure(entries: tuple[str, ...], exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every project module reachable by imports from ``entries``, minus ``NOT_NUMERIC``
    and ``exclude`` (whose own imports are then not followed either)."""
    seen: set[str] = set()
    todo = [name for name in entries if not _skipped(name, exclude)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            raise ModuleNotFoundError(f"fingerprint entry module {name} has no file under {REPO_ROOT}")
        todo.extend(dep for dep in project_imports(name, path) if dep not in seen and not _skipped(dep, exclude))
    return tuple(sorted(seen))


def _version(library: str) -> str:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def code_fingerprint(stage: str, *, detector_sha256: Optional[str] = None) -> dict[str, Any]:
    """What ``stage``'s numbers depend on besides config and data.

    Args:
        stage: ``first_stage``, ``ldm`` or ``eval``.
        detector_sha256: sha256 of the Inception weights file (evaluation only; required there).

    Returns:
        ``{"id": sha256 hex of the rest, "modules": {module: sha256 of its source},
        "libraries": {name: version}}`` plus ``"detector"`` for evaluation.
    """
    if stage == Stage.eval.value and not detector_sha256:
        raise ValueError("the evaluation fingerprint needs the detector weights' sha256")
    modules = {name: sha256_file(_module_file(name)) for name in module_closure(ENTRY_MODULES[stage], NOT_IN_RESULT[stage])}
    body: dict[str, Any] = {"modules": modules, "libraries": {lib: _version(lib) for lib in LIBRARIES[stage]}}
    if stage == Stage.eval.value:
        body["detector"] = detector_sha256
    return {"id": sha256_json(body), **body}
