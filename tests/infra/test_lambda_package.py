"""infra/lambda_package.py on small made-up packages: what it keeps, what it deletes, what stops the build."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from infra.lambda_package import PackageError, trim

VERSION = (3, 12)


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


BASE = {
    "core/__init__.py": "",
    "core/used.py": "import json\nfrom core import helper\n",
    "core/helper.py": "def f():\n    from core import lazy\n",
    "core/lazy.py": "",
    "core/unused.py": "import nothing_at_all\n",
    "core/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_s3\n",
    "functions/__init__.py": "",
    "functions/step.py": "import core.used\nimport core.typed\nimport pydantic\n",
    "prompts/a/v1.md": "hi",
    "functions/templates/page.html": "<p>",
}


def test_it_keeps_what_the_handler_imports_lazily_too_and_deletes_the_rest(tmp_path: Path) -> None:
    root = _package(tmp_path, BASE)
    done = trim(root, "functions.step", ["pydantic"], VERSION)
    kept = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert kept == [
        "core/__init__.py",
        "core/helper.py",
        "core/lazy.py",
        "core/typed.py",
        "core/used.py",
        "functions/__init__.py",
        "functions/step.py",
    ]
    assert any("prompts/" in line for line in done)


def test_a_declared_dynamic_module_keeps_its_data(tmp_path: Path) -> None:
    files = BASE | {
        "core/kernel/__init__.py": "",
        "core/kernel/prompts.py": "from pathlib import Path\nROOT = Path(__file__)\n",
    }
    files["functions/step.py"] += "import core.kernel.prompts\n"
    root = _package(tmp_path, files)
    trim(root, "functions.step", ["pydantic"], VERSION)
    assert (root / "prompts/a/v1.md").exists()
    assert not (root / "functions/templates").exists()


def test_an_undeclared_dynamic_import_stops_the_build(tmp_path: Path) -> None:
    root = _package(tmp_path, BASE | {"core/lazy.py": "import importlib\nimportlib.import_module('core.x')\n"})
    with pytest.raises(PackageError, match=r"core/lazy\.py:2 imports by name"):
        trim(root, "functions.step", ["pydantic"], VERSION)


def test_a_missing_import_stops_the_build_unless_only_a_call_makes_it_and_it_is_lazy_ok(tmp_path: Path) -> None:
    eager = _package(tmp_path / "eager", BASE | {"core/used.py": "import httpx\n"})
    with pytest.raises(PackageError, match=r"core/used\.py:1 imports httpx"):
        trim(eager, "functions.step", ["pydantic"], VERSION, lazy_ok=["httpx"])
    lazy = _package(tmp_path / "lazy", BASE | {"core/lazy.py": "import httpx\n"})
    with pytest.raises(PackageError, match=r"core/lazy\.py:1 imports httpx \(when called\)"):
        trim(lazy, "functions.step", ["pydantic"], VERSION)
    assert any("httpx" in line for line in trim(lazy, "functions.step", ["pydantic"], VERSION, lazy_ok=["httpx"]))


def test_a_dependency_may_lack_its_optional_and_in_function_imports_but_not_its_module_level_ones(
    tmp_path: Path,
) -> None:
    dependency = {
        "dep/__init__.py": "try:\n    import anyio\nexcept ImportError:\n    anyio = None\nfrom dep import io\n",
        "dep/io.py": "import sys\nif sys.version_info < (3, 11):\n    import tomli\ndef f():\n    import h2\n",
    }
    root = _package(tmp_path / "ok", BASE | dependency | {"core/used.py": "import dep\n"})
    trim(root, "functions.step", ["pydantic"], VERSION)
    broken = _package(
        tmp_path / "broken", BASE | dependency | {"core/used.py": "import dep\n", "dep/io.py": "import h2\n"}
    )
    with pytest.raises(PackageError, match=r"dep/io\.py:1 imports h2"):
        trim(broken, "functions.step", ["pydantic"], VERSION)
