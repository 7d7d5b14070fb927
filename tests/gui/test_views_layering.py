"""The console's views build no queries: they import no SQLAlchemy at run time.

Every read and write a view makes is a service function, the one the CLI calls too, so a
rule such as "what counts toward a user's limit" exists once. A type named in an
annotation may still come from SQLAlchemy, imported under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VIEWS = Path(__file__).resolve().parents[2] / "app" / "views"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module (or a function in it) runs."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # an ``else:`` branch does run
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def sqlalchemy_imports(source: str) -> list[tuple[int, str]]:
    return [
        (line, module)
        for line, module in runtime_imports(ast.parse(source))
        if module == "sqlalchemy" or module.startswith("sqlalchemy.")
    ]


def test_the_check_sees_runtime_imports_and_ignores_type_only_ones() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy.orm import Session\n"
        "if typing.TYPE_CHECKING:\n"
        "    import sqlalchemy\n"
        "else:\n"
        "    from sqlalchemy import select\n"
        "def load():\n"
        "    from sqlalchemy.engine import make_url\n"
        "    import sqlalchemy.exc as exc\n"
    )
    assert sqlalchemy_imports(source) == [
        (8, "sqlalchemy"),
        (10, "sqlalchemy.engine"),
        (11, "sqlalchemy.exc"),
    ]


@pytest.mark.parametrize(
    "path", sorted(VIEWS.rglob("*.py")), ids=lambda path: str(path.relative_to(VIEWS))
)
def test_view_module_imports_no_sqlalchemy_at_run_time(path: Path) -> None:
    found = sqlalchemy_imports(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(VIEWS.parent.parent)} imports {found}: move the query into a "
        "service function (the CLI's too), or import the type under `if TYPE_CHECKING:`."
    )
