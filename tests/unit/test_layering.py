"""The layers, proved from the source: core imports neither plane, the planes not each other.

Every import statement counts, at module level or inside a function, so a lazy import
cannot hide a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "core": {"backfill", "workers", "coinbase_sim", "celeryconfig", "celery", "kombu", "bench"},
    "workers": {"backfill", "celeryconfig", "coinbase_sim", "bench"},
    "backfill": {"workers"},
    "coinbase_sim": {"backfill", "workers", "core", "celeryconfig"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_its_layers(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {
        str(f.relative_to(ROOT)): sorted(imported_packages(f) & FORBIDDEN[package]) for f in files
    }
    assert not {k: v for k, v in bad.items() if v}


def test_the_checker_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from workers.tasks import x\n    import backfill.app\n")
    assert imported_packages(f) == {"workers", "backfill"}


def test_celeryconfig_reads_only_core():
    assert imported_packages(ROOT / "celeryconfig.py") <= {"kombu", "core", "__future__"}


def test_importing_core_loads_no_celery_app_and_no_plane():
    code = (
        "import sys, pkgutil, importlib, core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('core.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('celery', 'kombu', 'backfill', 'workers', 'celeryconfig'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_the_candle_parser_builds_no_celery_app():
    code = "import sys, core.candle; print('celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
