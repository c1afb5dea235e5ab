"""The layering check (ARCHITECTURE.md "The map"): imports only point downwards, and core never reads the environment.

Run as ``python -m tests.layering [ROOT]`` (``make layers``). It parses every module with :mod:`ast` (nothing
is imported or executed) and prints one ``path:line: problem`` per offence, exiting 1 if there are any:

- ``core/`` imports neither ``agents``, ``functions``, ``infra`` nor ``aws_lambda_powertools``, and never reads
  ``os.environ`` / ``os.getenv`` (settings are parsed once in ``functions/`` and passed down);
- ``agents/`` (user space) imports neither ``functions`` nor ``infra``: an agent is built on the kernel only;
- ``functions/`` does not import ``infra`` (the local stack drives handlers, not the reverse).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN_IMPORTS: dict[str, tuple[str, ...]] = {
    "core": ("agents", "functions", "infra", "aws_lambda_powertools"),
    "agents": ("functions", "infra"),
    "functions": ("infra",),
}
"""For each checked package, the top-level packages it must not import."""

NO_ENVIRONMENT = ("core",)
"""Packages that must not read the process environment."""

_ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb"})
_DYNAMIC_IMPORTS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True, order=True)
class Offence:
    path: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


def _module_name(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _absolute(node: ast.ImportFrom, module: list[str], is_package: bool) -> str:
    """The absolute module an ``import from`` names, resolving leading dots against the importing module."""
    if node.level == 0:
        return node.module or ""
    base = module if is_package else module[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


class _Visitor(ast.NodeVisitor):
    def __init__(self, rel: str, package: str, module: list[str], is_package: bool) -> None:
        self.rel = rel
        self.package = package
        self.module = module
        self.is_package = is_package
        self.forbidden = FORBIDDEN_IMPORTS.get(package, ())
        self.check_env = package in NO_ENVIRONMENT
        self.os_names: set[str] = set()
        self.offences: list[Offence] = []

    def _flag(self, node: ast.AST, problem: str) -> None:
        self.offences.append(Offence(self.rel, getattr(node, "lineno", 0), problem))

    def _check_target(self, node: ast.AST, target: str) -> None:
        top = target.split(".", 1)[0]
        if top in self.forbidden:
            self._flag(node, f"{self.package} must not import {top} (imports {target})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_target(node, alias.name)
            if alias.name == "os" or alias.name.startswith("os."):
                self.os_names.add(alias.asname or "os")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = _absolute(node, self.module, self.is_package)
        self._check_target(node, target)
        if not target:  # ``from .. import functions`` climbing out of the package
            for alias in node.names:
                self._check_target(node, alias.name)
        if self.check_env and target == "os":
            for alias in node.names:
                if alias.name in _ENV_NAMES or alias.name == "*":
                    self._flag(node, f"{self.package} must not read the environment (from os import {alias.name})")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (
            self.check_env
            and node.attr in _ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in self.os_names
        ):
            self._flag(node, f"{self.package} must not read the environment ({node.value.id}.{node.attr})")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _DYNAMIC_IMPORTS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._check_target(node, first.value)
        self.generic_visit(node)


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    for package in FORBIDDEN_IMPORTS:
        base = root / package
        if base.is_dir():
            for path in sorted(base.rglob("*.py")):
                if "__pycache__" not in path.parts:
                    yield package, path


def check(root: Path = ROOT) -> tuple[list[Offence], int]:
    """Every offence under ``root``, and how many modules were checked."""
    offences: list[Offence] = []
    count = 0
    for package, path in _modules(root):
        count += 1
        rel = path.relative_to(root).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        except SyntaxError as exc:
            offences.append(Offence(rel, exc.lineno or 0, f"cannot be parsed: {exc.msg}"))
            continue
        visitor = _Visitor(rel, package, _module_name(path, root), path.name == "__init__.py")
        visitor.visit(tree)
        offences.extend(visitor.offences)
    return sorted(set(offences)), count


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]).resolve() if args else ROOT
    offences, count = check(root)
    for offence in offences:
        print(offence)
    if offences:
        print(f"layering: {len(offences)} offence(s) in {count} modules", file=sys.stderr)
        return 1
    print(f"layering ok: {count} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
