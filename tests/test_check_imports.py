"""scripts/check_imports.py on small package trees written into tmp_path."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_imports.py"
spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
check_imports = importlib.util.module_from_spec(spec)
sys.modules.setdefault("check_imports", check_imports)  # dataclasses look their module up
spec.loader.exec_module(check_imports)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Writes ``{"pkg/mod.py": source}`` under ``root``; every package gets an ``__init__.py``."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        for parent in path.relative_to(root).parents:
            if parent != Path(".") and not (root / parent / "__init__.py").exists():
                (root / parent / "__init__.py").write_text("")
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def cycle_modules(findings) -> list[list[str]]:
    return [group["modules"] for group in findings.cycles]


def test_clean_tree(tmp_path):
    write_tree(tmp_path, {
        "fusion/__init__.py": "from .core import run\n",
        "fusion/core.py": "import numpy as np\nfrom .util import helper\n\ndef run():\n    return helper()\n",
        "fusion/util.py": "import os\n\ndef helper():\n    return os.sep\n",
        "fusion/sub/leaf.py": "from ..util import helper\nfrom fusion import core\n",
        "dashboard/app.py": "import dash\nfrom fusion.core import run\nfrom fusion import util\n",
    })
    findings = check_imports.check(tmp_path, ("fusion", "dashboard"))
    assert findings.clean, check_imports.report(findings)
    assert findings.modules == 7  # fusion, .core, .util, .sub, .sub.leaf, dashboard, .app
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no import cycles" in result.stdout


def test_cycle_at_import_time(tmp_path):
    write_tree(tmp_path, {
        "fusion/a.py": "from .b import g\n\ndef f():\n    return 1\n",
        "fusion/b.py": "from . import c\n\ndef g():\n    return 2\n",
        "fusion/c.py": "import fusion.a\n",
        "fusion/d.py": "from .a import f\n",  # imports into the cycle but is not part of it
    })
    findings = check_imports.check(tmp_path, ("fusion",))
    assert cycle_modules(findings) == [["fusion.a", "fusion.b", "fusion.c"]]
    (cycle,) = findings.cycles[0]["cycles"]
    assert [(s["from"], s["to"], s["lazy"]) for s in cycle] == [
        ("fusion.a", "fusion.b", False), ("fusion.b", "fusion.c", False), ("fusion.c", "fusion.a", False)]
    result = run(tmp_path, "fusion")
    assert result.returncode == 1
    assert "import cycle among 3 modules: fusion.a, fusion.b, fusion.c" in result.stdout
    assert "fusion.a -[line 1]-> fusion.b -[line 1]-> fusion.c -[line 1]-> fusion.a" in result.stdout


def test_lazy_cycle_inside_a_function(tmp_path):
    write_tree(tmp_path, {
        "fusion/saliency/pixel.py": "from .field import probe\n\ndef pixel():\n    return probe()\n",
        "fusion/saliency/field.py": """
            def probe():
                return 1

            def verify():
                from .pixel import pixel  # lazy: only when verify runs
                return pixel()
        """,
    })
    findings = check_imports.check(tmp_path, ("fusion",))
    assert cycle_modules(findings) == [["fusion.saliency.field", "fusion.saliency.pixel"]]
    steps = {(s["from"], s["to"]): s for s in findings.cycles[0]["cycles"][0]}
    assert steps["fusion.saliency.field", "fusion.saliency.pixel"]["lazy"] is True
    assert steps["fusion.saliency.field", "fusion.saliency.pixel"]["lines"] == [6]
    assert steps["fusion.saliency.pixel", "fusion.saliency.field"]["lazy"] is False
    assert "lazy line 6" in run(tmp_path, "fusion").stdout


def test_type_checking_import_is_no_cycle(tmp_path):
    write_tree(tmp_path, {
        "fusion/a.py": "from .b import g\n",
        "fusion/b.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .a import Thing
            def g():
                return 1
        """,
    })
    assert check_imports.check(tmp_path, ("fusion",)).clean


def test_layer_violation(tmp_path):
    write_tree(tmp_path, {
        "fusion/service.py": "def serve():\n    import dashboard.layout\n    return dashboard.layout\n",
        "fusion/plot.py": "from dash import html\n",
        "fusion/fine.py": "import dash_bootstrap_components\n",  # another package, not dash
        "dashboard/layout.py": "import dash\nfrom fusion import service\n",
    })
    findings = check_imports.check(tmp_path, ("fusion", "dashboard"))
    assert sorted((v["module"], v["imports"]) for v in findings.layer_violations) == [
        ("fusion.plot", "dash"), ("fusion.service", "dashboard.layout")]
    # the lazy fusion.service -> dashboard.layout -> fusion.service is also a cycle
    assert cycle_modules(findings) == [["dashboard.layout", "fusion.service"]]
    result = run(tmp_path, "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["clean"] is False
    assert len(data["layer_violations"]) == 2


def test_private_names(tmp_path):
    write_tree(tmp_path, {
        "fusion/engine.py": "_memo = {}\n__version__ = '1'\n\ndef _state(m):\n    return _memo\n",
        "fusion/pixel.py": "from .engine import _state, __version__\n",
        "fusion/pool.py": """
            from fusion import engine
            import fusion.engine as eng
            import fusion.engine

            def peek(service):
                service._private_method()  # an instance's attribute: not followed
                return engine._memo, eng._state, fusion.engine._memo, engine.__name__
        """,
        "fusion/self_use.py": "import fusion.self_use\n_x = 1\ny = fusion.self_use._x\n",
    })
    findings = check_imports.check(tmp_path, ("fusion",))
    found = sorted((p["module"], p["from"], p["name"], p["kind"]) for p in findings.private_names)
    assert found == [
        ("fusion.pixel", "fusion.engine", "_state", "import"),
        ("fusion.pool", "fusion.engine", "_memo", "attribute"),
        ("fusion.pool", "fusion.engine", "_memo", "attribute"),
        ("fusion.pool", "fusion.engine", "_state", "attribute"),
    ]
    assert not findings.cycles and not findings.layer_violations
    result = run(tmp_path, "fusion")
    assert result.returncode == 1
    assert "private name: fusion.pixel (line 1) imports _state from fusion.engine" in result.stdout


def test_private_module_import_is_allowed(tmp_path):
    write_tree(tmp_path, {"fusion/_impl.py": "x = 1\n", "fusion/api.py": "from . import _impl\nfrom ._impl import x\n"})
    assert check_imports.check(tmp_path, ("fusion",)).clean


def test_parse_error_and_missing_package(tmp_path):
    write_tree(tmp_path, {"fusion/bad.py": "def broken(:\n"})
    result = run(tmp_path, "fusion")
    assert result.returncode == 2
    assert "cannot parse fusion.bad" in result.stdout
    missing = run(tmp_path, "nowhere")
    assert missing.returncode == 2
    assert "no package nowhere" in missing.stderr


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_runs_on_this_repository(flag):
    # The verdict on the real tree is not asserted (its cycles are being removed); it must run and parse.
    result = subprocess.run([sys.executable, str(SCRIPT), *flag], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    if flag:
        assert json.loads(result.stdout)["modules"] > 20
