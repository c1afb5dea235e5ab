"""Trim one function's Lambda package to the modules of ours its handler imports; fail if a needed module is missing.

The Makefile's ``lambda-package`` recipe (which ``sam build`` runs) copies core/, agents/, functions/ and prompts/,
pip-installs the function's dependencies into ``ARTIFACTS_DIR`` and removes what the layer or the runtime has, then::

    python3 infra/lambda_package.py ARTIFACTS_DIR functions.step --provided aws_lambda_powertools pydantic ...

This reads the package's modules with :mod:`ast` (nothing is imported or run) and walks the import graph from the
handler's module: every ``import`` statement counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` and in a branch a ``sys.version_info`` test rules out for the target Python. Then it

- deletes the modules of core/, agents/ and functions/ the walk never reached, and the data directories
  (``prompts/``, ``functions/templates/``) no reached module reads;
- fails the build if a *firm* import (see :meth:`Package.walk`) resolves to nothing: not the package, not the
  standard library, not a top-level name ``--provided`` lists (what AWS's Powertools layer and the Lambda runtime
  have; not followed, not shipped here). It names the importer and its line. An import that runs only when a
  function is called may lack a top-level name ``--lazy-ok`` lists (Makefile ``LAMBDA_LAZY_OK``): httpx, in the
  functions that never notify, reply or call a model.

Third-party distributions are not chosen here: which ones a function ships is the Makefile's (``LAMBDA_NEEDS_*``,
``LAMBDA_NOT_IMPORTED``), because which of a library's lazy imports a function reaches depends on what it calls, which
no static walk knows (httpx imports httpcore, the sync path, inside functions; anyio, the async path, likewise).
tests/infra/test_packages.py imports each built package and runs its HTTP paths to check that choice.

Python can also import by name at run time, which no walk sees. :data:`DYNAMIC` lists the modules of ours that do
(or that find files next to their ``__file__``) with what they load; a module of ours that does it without an entry
there stops the build, so a new dynamic import is declared here rather than found missing in AWS. Stdlib only: it runs
under whichever python3 drives ``sam build``.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

OURS = ("core", "agents", "functions")
"""The packages of this repository the recipe copies (prompts/ is data, not a package)."""


@dataclass(frozen=True)
class Dynamic:
    """What a module of ours loads by name or by path at run time, beyond its import statements."""

    submodules_of: str = ""
    """Every public module of this package (``pkgutil.iter_modules`` + ``importlib.import_module``)."""
    data: tuple[str, ...] = ()
    """Directories (relative to the package's root) the module reads files from."""


DYNAMIC: dict[str, Dynamic] = {
    "agents": Dynamic(submodules_of="agents"),  # the registry imports every agents/<name>.py not starting with _
    "core.kernel.prompts": Dynamic(data=("prompts",)),  # DEFAULT_ROOT: <root>/prompts/<agent>/<version>.md
    "functions._html": Dynamic(data=("functions/templates",)),  # Jinja2's FileSystemLoader
}

DATA_DIRS = ("prompts", "functions/templates")
"""Data the recipe copies; each ships only if a reached module's :data:`DYNAMIC` entry names it."""

_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_LOADERS = frozenset({"pkgutil", "importlib.resources"})
"""Modules that find code or files by name or path."""


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    names: tuple[str, ...]  # ``from module import names`` (each may be a submodule)
    optional: bool  # inside ``try`` with an ``except ImportError`` (or broader)
    lazy: bool  # inside a function: runs when it is called, not when the module is imported
    line: int


@dataclass(frozen=True)
class Edge:
    module: str
    why: str  # "importer:line"
    firm: bool  # must resolve (see Package.walk)
    eager: bool  # runs when the handler's module is imported, not only when a function is called


@dataclass
class Walk:
    todo: list[Edge] = field(default_factory=list)
    reached: dict[str, Path] = field(default_factory=dict)  # module -> its file (a directory: namespace package)
    firm: set[str] = field(default_factory=set)  # the firm modules (see Package.walk): their imports must resolve
    eager: set[str] = field(
        default_factory=set
    )  # what importing the roots runs (no import inside a function on the way)
    provided: set[str] = field(default_factory=set)  # top-level names resolved by --provided
    missing: list[str] = field(default_factory=list)  # "importer:line imports name", required and not found
    absent: set[str] = field(default_factory=set)  # not in the package, imported only where that is tolerated
    data: set[str] = field(default_factory=set)


class PackageError(Exception):
    """The package lacks what its handler imports, or a module of ours loads by name without a DYNAMIC entry."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _version_test(test: ast.expr, version: tuple[int, int]) -> bool | None:
    """The value of ``sys.version_info <op> (x, y)`` for the target version, or None for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.comparators[0], ast.Tuple)):
        return None
    if not (isinstance(test.left, ast.Attribute) and test.left.attr == "version_info"):
        return None
    try:
        other = tuple(int(ast.literal_eval(e)) for e in test.comparators[0].elts)
    except (ValueError, TypeError):
        return None
    mine = (*version, 0, 0)[: len(other)]
    results = {ast.Lt: mine < other, ast.LtE: mine <= other, ast.Gt: mine > other, ast.GtE: mine >= other}
    return results.get(type(test.ops[0]))


def _guards(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(ast.unparse(kind).split(".")[-1] in _GUARDS for kind in kinds)


def imports_of(tree: ast.Module, module: str, *, is_package: bool, version: tuple[int, int]) -> list[Import]:
    """Every import ``module`` can run, as absolute names; those under TYPE_CHECKING or in a branch the target's
    ``sys.version_info`` rules out are left out."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        return f"{base}.{node.module}" if node.module else base

    def visit(nodes: Iterable[ast.AST], optional: bool, lazy: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend(Import(a.name, (), optional, lazy, node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names = tuple(a.name for a in node.names if a.name != "*")
                found.append(Import(absolute(node), names, optional, lazy, node.lineno))
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse, optional, lazy)
            elif isinstance(node, ast.If) and (value := _version_test(node.test, version)) is not None:
                visit(node.body if value else node.orelse, optional, lazy)
            elif isinstance(node, ast.Try | ast.TryStar):
                visit(node.body, optional or any(_guards(h) for h in node.handlers), lazy)
                visit([*node.handlers, *node.orelse, *node.finalbody], optional, lazy)
            else:
                inside = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                visit(ast.iter_child_nodes(node), optional, lazy or inside)

    visit(tree.body, False, False)
    return found


def dynamic_uses(tree: ast.Module) -> list[int]:
    """Lines where a module imports by name or finds files next to itself (what an import walk cannot follow)."""
    lines = []
    for node in ast.walk(tree):
        if (
            (isinstance(node, ast.Name) and node.id == "__file__")
            or (isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__"))
            or (isinstance(node, ast.Import) and any(a.name in _LOADERS for a in node.names))
            or (
                isinstance(node, ast.ImportFrom)
                and (
                    node.module in _LOADERS
                    or (node.module == "importlib" and any(a.name == "resources" for a in node.names))
                )
            )
        ):
            lines.append(node.lineno)
    return sorted(set(lines))


class Package:
    """One function's package directory, as the recipe laid it out."""

    def __init__(
        self, root: Path, provided: Iterable[str], version: tuple[int, int], lazy_ok: Iterable[str] = ()
    ) -> None:
        self.root = root
        self.provided = set(provided)
        self.lazy_ok = set(lazy_ok)
        self.version = version
        self.stdlib = set(sys.stdlib_module_names) | {"__future__"}
        self._trees: dict[Path, ast.Module] = {}

    def find(self, module: str) -> Path | None:
        """The file of ``module`` in the package: a package's ``__init__.py``, a module's ``.py``, an extension
        module, or the directory of a namespace package below the top level; None if it has none."""
        *parents, last = module.split(".")
        folder = self.root.joinpath(*parents)
        if not folder.is_dir():
            return None
        if (folder / last / "__init__.py").is_file():
            return folder / last / "__init__.py"
        if (folder / f"{last}.py").is_file():
            return folder / f"{last}.py"
        for extension in sorted(folder.glob(f"{last}.*so")):
            if extension.name.split(".")[0] == last:
                return extension
        if parents and (folder / last).is_dir():
            return folder / last
        return None

    def tree(self, path: Path) -> ast.Module:
        if path not in self._trees:
            try:
                self._trees[path] = ast.parse(path.read_bytes(), filename=str(path))
            except SyntaxError as exc:
                raise PackageError(f"{path.relative_to(self.root)} does not parse: {exc}") from None
        return self._trees[path]

    def walk(self, roots: Iterable[str]) -> Walk:
        """Every module of the package ``roots`` can import, and the imports that must resolve but do not.

        The roots are *firm*, and so is what a firm module of ours imports (at module level or inside a function: our
        lazy imports are our code paths) and what a firm third-party module imports at module level: a firm import
        must resolve, except one that runs only when a function is called (not when the handler's module is
        imported) of a top-level name in ``lazy_ok``: what a function imports only on code paths it never runs (the
        API never notifies, so its package has no httpx). An optional import, and one a third-party module makes
        inside a function, serve a feature that may be off (httpcore's HTTP/2 connection, httpx's CLI and async
        transports): they are followed where the module is in the package and tolerated where it is not (h2, click,
        trio; anyio once removed)."""
        walk = Walk()
        walk.todo = [Edge(root, "the handler", firm=True, eager=True) for root in roots]
        while walk.todo:
            self._reach(walk.todo.pop(), walk)
        return walk

    def _reach(self, edge: Edge, walk: Walk) -> None:
        module, why, firm, eager = edge.module, edge.why, edge.firm, edge.eager
        if module in walk.reached and (module in walk.firm or not firm) and (module in walk.eager or not eager):
            return
        top = module.split(".", maxsplit=1)[0]
        if top in self.stdlib:
            return
        if top in self.provided:
            walk.provided.add(top)
            return
        path = self.find(module)
        if path is None:
            if firm and (eager or top not in self.lazy_ok):
                walk.missing.append(f"{why} imports {module}{'' if eager else ' (when called)'}")
            else:
                walk.absent.add(module)
            return
        if "." in module:  # importing a.b runs a/__init__.py first
            self._reach(Edge(module.rpartition(".")[0], why, firm=firm, eager=eager), walk)
        walk.reached[module] = path
        firm = firm or module in walk.firm
        eager = eager or module in walk.eager
        if firm:
            walk.firm.add(module)
        if eager:
            walk.eager.add(module)
        if path.is_dir() or path.suffix != ".py":
            return
        tree = self.tree(path)
        here = str(path.relative_to(self.root))
        ours = top in OURS
        for imp in imports_of(tree, module, is_package=path.name == "__init__.py", version=self.version):
            strong = firm and not imp.optional and (ours or not imp.lazy)
            targets = [imp.module, *(f"{imp.module}.{n}" for n in imp.names if self.find(f"{imp.module}.{n}"))]
            walk.todo.extend(Edge(t, f"{here}:{imp.line}", firm=strong, eager=eager and not imp.lazy) for t in targets)
        if ours:
            self._dynamic(module, tree, here, eager, walk)

    def _dynamic(self, module: str, tree: ast.Module, here: str, eager: bool, walk: Walk) -> None:
        lines = dynamic_uses(tree)
        if not lines:
            return
        declared = DYNAMIC.get(module)
        if declared is None:
            raise PackageError(
                f"{here}:{lines[0]} imports by name or reads files next to itself, which no import walk follows: "
                f"declare what {module} loads in infra/lambda_package.py DYNAMIC"
            )
        walk.data.update(declared.data)
        if declared.submodules_of:
            folder = self.root.joinpath(*declared.submodules_of.split("."))
            for child in sorted(folder.iterdir()):
                name = child.name.removesuffix(".py")
                is_module = child.suffix == ".py" or (child / "__init__.py").is_file()
                if is_module and not name.startswith("_") and name.isidentifier():
                    why = f"{here} (imports every public module)"
                    walk.todo.append(Edge(f"{declared.submodules_of}.{name}", why, firm=True, eager=eager))


def _remove_empty_directories(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def trim(
    root: Path, handler: str, provided: Iterable[str], version: tuple[int, int], lazy_ok: Iterable[str] = ()
) -> list[str]:
    """Delete what ``handler``'s module never imports from the package at ``root``; returns what it did, one
    line each. Raises :class:`PackageError` if the package lacks a module the handler needs."""
    provided = set(provided)
    walk = Package(root, provided, version, lazy_ok).walk([handler])
    if walk.missing:
        raise PackageError("the package lacks modules: " + "; ".join(sorted(set(walk.missing))))
    reached = {path.resolve() for path in walk.reached.values()}
    removed: list[str] = []

    dropped = 0
    for top in OURS:
        for path in sorted((root / top).rglob("*.py")):
            if path.resolve() not in reached:
                path.unlink()
                dropped += 1
    if dropped:
        removed.append(f"removed {dropped} modules of {'/, '.join(OURS)}/ it never imports")
    for data in DATA_DIRS:
        if data not in walk.data and (root / data).exists():
            shutil.rmtree(root / data)
            removed.append(f"removed {data}/: no module it imports reads it")
    _remove_empty_directories(root)

    again = Package(root, provided, version, lazy_ok).walk([handler])
    if again.missing or set(again.reached) != set(walk.reached):
        raise PackageError(f"the trimmed package differs: {sorted(again.missing) or 'another import graph'}")
    absent = sorted({module.split(".")[0] for module in again.absent})
    if absent:
        removed.append(f"not in the package, imported only optionally, by a dependency's feature or lazily: {absent}")
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trim a function's Lambda package to what its handler imports.")
    parser.add_argument("package", type=Path, help="the function's package directory (ARTIFACTS_DIR)")
    parser.add_argument("handler", help="the handler's module, e.g. functions.step")
    parser.add_argument("--provided", nargs="*", default=[], help="top-level modules the layer and the runtime have")
    parser.add_argument(
        "--lazy-ok",
        nargs="*",
        default=[],
        help="top-level modules it may import inside functions without shipping them",
    )
    parser.add_argument("--python-version", default="{}.{}".format(*sys.version_info[:2]), help="the target's X.Y")
    args = parser.parse_args(argv)
    major, minor = (int(part) for part in args.python_version.split("."))
    try:
        removed = trim(args.package, args.handler, args.provided, (major, minor), args.lazy_ok)
    except PackageError as exc:
        print(f"lambda_package: {args.handler}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in removed:
        print(f"{args.handler}: {line}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
