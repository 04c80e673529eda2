"""The package's layers: chapters -> experiments -> methods -> core, read from every module's imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import thesis_lib

PACKAGE = Path(thesis_lib.__file__).parent
CORE = {"models", "surgery", "data", "training", "stats", "distributed", "files"}
LAYER_OF = {
    **{name: 0 for name in CORE},
    "methods": 1,
    "experiments": 2,
    "chapters": 3,
    "plots": 3,
    "tables": 3,
    "planning": 4,
    "headless": 4,
    "cli": 4,
    "__main__": 4,
}


def layer(module: str) -> int:
    """The layer of `thesis_lib.<module>` (its first component): 0 core, 1 methods, 2 run cache, 3 chapters."""
    return LAYER_OF[module.split(".")[0]]


def _is_module(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def package_imports(path: Path) -> set[str]:
    """The thesis_lib modules `path` imports, as dotted names below the package (`methods.prunetrain`);
    the package root itself (`from . import project_root`) counts as no layer and is left out."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("thesis_lib"):
                base = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = ".".join([*base, alias.name])
                found.add(candidate if _is_module(candidate) else ".".join(base))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("thesis_lib.") for a in node.names if a.name.startswith("thesis_lib."))
    return {name for name in found if name}


# The thesis's four algorithms stand alone; `methods.search` (chapter 6.3) combines PruneTrain and Net2Net.
STANDALONE_METHODS = ("prunetrain", "net2net", "morphnet", "batchsize")
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = path.relative_to(PACKAGE).with_suffix("").parts
    own_layer = layer(own[0])
    for imported in package_imports(path):
        assert layer(imported) <= own_layer, f"{path.relative_to(PACKAGE)} imports thesis_lib.{imported}"
        if own[0] == "methods" and own[-1] in STANDALONE_METHODS and imported.startswith("methods"):
            pytest.fail(f"{path.relative_to(PACKAGE)} imports another method ({imported}); it must stand alone")


# The run cache's modules in the order a run passes through them: each imports only those before it.
EXPERIMENTS_ORDER = ("executors", "profiles", "progress", "provenance", "plans", "registry", "store", "sweeps")


def test_the_run_cache_modules_import_only_the_ones_before_them():
    folder = PACKAGE / "experiments"
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == sorted(EXPERIMENTS_ORDER)
    for position, stem in enumerate(EXPERIMENTS_ORDER):
        for imported in package_imports(folder / f"{stem}.py"):
            if imported.startswith("experiments."):
                assert imported.removeprefix("experiments.") in EXPERIMENTS_ORDER[:position], (
                    f"experiments/{stem}.py imports {imported}, which comes after it"
                )


def test_a_later_chapter_may_import_an_earlier_one_never_the_reverse():
    for path in sorted((PACKAGE / "chapters").glob("ch*.py")):
        for imported in package_imports(path):
            if imported.startswith("chapters.ch"):
                assert imported.removeprefix("chapters.") < path.stem, f"{path.stem} imports {imported}"


def test_the_layering_check_sees_an_upward_import(tmp_path):
    offending = PACKAGE / "methods" / "_probe_layering.py"
    offending.write_text("from ..experiments import run\n")
    try:
        assert "experiments" in package_imports(offending)
        assert layer("experiments") > layer("methods.prunetrain")
    finally:
        offending.unlink()


def test_importing_the_methods_loads_neither_the_run_cache_nor_a_chapter():
    code = (
        "import sys, thesis_lib.methods.prunetrain, thesis_lib.methods.net2net, thesis_lib.methods.morphnet, "
        "thesis_lib.methods.batchsize; print(sorted(m for m in sys.modules if m.startswith(("
        "'thesis_lib.experiments', 'thesis_lib.chapters', 'thesis_lib.plots'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_training_a_run_does_not_import_torchvision_until_a_cifar_or_download_needs_it():
    """torchvision adds about 3 s to every process (each DDP rank, Ray worker, notebook kernel): the run store
    and the training loop must not import it; loading CIFAR does."""
    code = (
        "import sys, thesis_lib.experiments, thesis_lib.distributed; print('torchvision' in sys.modules); "
        "from thesis_lib.data import cifar10\ntry:\n    cifar10(root='/nonexistent')\nexcept FileNotFoundError:\n"
        "    pass\nprint('torchvision' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == ["False", "True"]
