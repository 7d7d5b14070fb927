"""How long the list pages' GUI-thread steps take for 10,000 rows, old model against new.

    .venv/bin/python bench/bench_gui_domains.py [--rows N]

Seeds N sender domains (two records each) and N users (with send counts) in a fresh
SQLite database, then, for the Sender Domains page and for the Users page:

1. times the service's row function (``sender_domains.domain_rows``,
   ``users.user_rows``): the read the page runs in the executor, not on the GUI thread;
2. times the GUI-thread steps (load the rows, sort by each column, one filter keystroke,
   clear it, a keyed refresh with a few changed rows) in the shared ``RowTableModel``,
   and the same steps through the ``QSortFilterProxyModel`` the pages used before
   (``OldFilterProxy`` below, as it was), printing both and their ratio.

Target: every GUI-thread step well under the 100 ms the test watchdog allows. Figures
only; the test suite checks the behaviour (tests/test_gui_table_model.py and the pages').
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QApplication
from sqlalchemy import insert, select

from app.models import User, UserGroup, UserSendCount
from app.models.database import Database
from app.services import sender_domains, users
from app.views.pages.domains import COLUMNS as DOMAIN_COLUMNS
from app.views.pages.domains import by_domain_and_kind, display_rows
from app.views.pages.users import UsersPage, by_username
from app.views.table_model import SORT_ROLE, Column, Row, RowKey, RowTableModel
from tests.gui.test_gui_domains import seed_many

LIMIT_MS = 100.0
Index = QModelIndex | QPersistentModelIndex


class OldFilterProxy(QSortFilterProxyModel):
    """The proxy every page but Sender Domains used before: sorts by SORT_ROLE and keeps
    rows whose any column contains the filter text, calling back into Python per row."""

    def __init__(self) -> None:
        super().__init__()
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(-1)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: Index, right: Index) -> bool:
        a = left.data(SORT_ROLE)
        b = right.data(SORT_ROLE)
        try:
            return bool(a < b)
        except TypeError:
            return (a is not None, str(a)) < (b is not None, str(b))


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def seed_users(db: Database, count: int) -> None:
    """``count`` users with a few days of send counts each, inserted in bulk."""
    today = datetime.now(UTC).date()
    with db.transaction() as session:
        group = UserGroup(name="Many", daily_email_limit=500, monthly_email_limit=10_000)
        session.add(group)
        session.flush()
        session.execute(
            insert(User),
            [
                {
                    "username": f"member{i:05d}",
                    "email": f"member{i}@example.com",
                    "group_id": group.id,
                    "is_active": bool(i % 7),
                }
                for i in range(count)
            ],
        )
        ids = session.scalars(select(User.id).where(User.group_id == group.id)).all()
        days: list[date] = [today - timedelta(days=n) for n in range(3)]
        session.execute(
            insert(UserSendCount),
            [
                {"user_id": user_id, "day": day, "via_default_domain": False, "sent": user_id % 97}
                for user_id in ids
                for day in days
            ],
        )


def changed_a_little(rows: Sequence[Row], field: str) -> list[Row]:
    """Fresh dicts (as a reload gives), five of them with a new value (and filter text)."""
    fresh = [dict(row) for row in rows]
    for row in fresh[:: max(len(fresh) // 5, 1)][:5]:
        row[field] = f"{row[field]} (changed)"
        row["search"] = f"{row['search']} (changed)"
    return fresh


def compare(
    title: str, columns: Sequence[Column], rows: list[Row], key: RowKey, field: str
) -> None:
    new = RowTableModel(columns, key=key, sort_column=0)
    old_source = RowTableModel(columns)  # without a key or sort: a plain list, reset on load
    old = OldFilterProxy()
    old.setSourceModel(old_source)
    old.sort(0, Qt.SortOrder.AscendingOrder)
    steps: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("load rows", lambda: new.set_rows(rows), lambda: old_source.set_rows(rows)),
    ]
    for number, column in enumerate(columns):
        steps.append(
            (
                f"sort by {column.title}",
                lambda n=number: new.sort(n, Qt.SortOrder.DescendingOrder),
                lambda n=number: old.sort(n, Qt.SortOrder.DescendingOrder),
            )
        )
    fresh = changed_a_little(rows, field)
    steps += [
        (
            "filter keystroke '0999'",
            lambda: new.set_filter("0999"),
            lambda: old.setFilterFixedString("0999"),
        ),
        ("clear filter", lambda: new.set_filter(""), lambda: old.setFilterFixedString("")),
        (
            "refresh, 5 rows changed",
            lambda: new.set_rows(fresh),
            lambda: old_source.set_rows(fresh),
        ),
    ]
    print(f"\n{title}, {len(rows):,} rows (GUI thread):")
    print(f"  {'step':<34} {'new model':>10} {'old proxy':>10} {'old/new':>8}")
    worst = 0.0
    for label, new_step, old_step in steps:
        new_ms, old_ms = timed(new_step), timed(old_step)
        worst = max(worst, new_ms)
        ratio = old_ms / new_ms if new_ms > 0 else float("inf")
        flag = "  <-- over the watchdog's limit" if new_ms >= LIMIT_MS else ""
        print(f"  {label:<34} {new_ms:8.1f} ms {old_ms:7.1f} ms {ratio:7.0f}x{flag}")
    print(f"  worst new-model step: {worst:.1f} ms (limit {LIMIT_MS:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", "--domains", type=int, default=10_000)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])

    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        started = time.perf_counter()
        seed_many(db, args.rows)
        seed_users(db, args.rows)
        print(f"seeded {args.rows:,} domains and users in {time.perf_counter() - started:.1f} s")
        domain_rows: list[Row] = []
        user_rows: list[Row] = []
        print("service row functions (executor, not the GUI thread):")
        with db.session() as session:
            for label, step in (
                (
                    "sender_domains.domain_rows + display",
                    lambda: domain_rows.extend(display_rows(sender_domains.domain_rows(session))),
                ),
                ("users.user_rows", lambda: user_rows.extend(users.user_rows(session))),
            ):
                print(f"  {label:<40} {timed(step):8.1f} ms")
        db.dispose()

    prepare = RowTableModel(UsersPage.columns).prepare
    print(f"  {'filter text for the Users page':<40} {timed(lambda: prepare(user_rows)):8.1f} ms")

    compare("Sender Domains", DOMAIN_COLUMNS, domain_rows, by_domain_and_kind, "template")
    compare("Users", UsersPage.columns, user_rows, by_username, "email")
    app.quit()


if __name__ == "__main__":
    main()
