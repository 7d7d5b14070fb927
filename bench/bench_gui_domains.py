"""How long the Sender Domains page's GUI-thread steps take for many domains.

    .venv/bin/python bench/bench_gui_domains.py [--domains N]

Seeds N domains (default 10,000, two records each) in a fresh SQLite database, then times

1. ``domain_rows``: the one light query the page runs in the executor;
2. on the GUI thread: loading the rows into the page's model, sorting by each column, and
   one filter keystroke, against the same steps through the shared ``FilterProxy``
   (``QSortFilterProxyModel`` calling back into Python per comparison).

Target: every GUI-thread step well under the 100 ms the test watchdog allows. Figures
only; the test suite checks the behaviour (tests/test_gui_domains.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.models.database import Database
from app.views.pages.domains import COLUMNS, DomainTableModel, domain_rows
from app.views.table_model import FilterProxy, RowTableModel
from tests.test_gui_domains import seed_many

LIMIT_MS = 100.0


def timed(label: str, step: Callable[[], object], *, gui: bool = True) -> float:
    started = time.perf_counter()
    step()
    elapsed = (time.perf_counter() - started) * 1000
    flag = "   <-- over the watchdog's limit" if gui and elapsed >= LIMIT_MS else ""
    print(f"  {label:<42} {elapsed:8.1f} ms{flag}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])

    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        started = time.perf_counter()
        seed_many(db, args.domains)
        print(f"seeded {args.domains:,} domains in {time.perf_counter() - started:.1f} s")
        with db.session() as session:
            rows: list[dict[str, object]] = []
            timed(
                "domain_rows (executor, not the GUI)",
                lambda: rows.extend(domain_rows(session)),
                gui=False,
            )
        db.dispose()

    print("page model (sorts and filters Python lists):")
    model = DomainTableModel(COLUMNS)
    timed("load rows (sorted by domain)", lambda: model.set_rows(rows))
    for number, column in enumerate(COLUMNS):

        def sort(column_number: int = number) -> None:
            model.sort(column_number, Qt.SortOrder.DescendingOrder)

        timed(f"sort by {column.title}", sort)
    timed("filter keystroke 'd0999'", lambda: model.set_filter("d0999"))
    timed("clear filter", lambda: model.set_filter(""))

    print("shared FilterProxy over RowTableModel, for comparison:")
    plain = RowTableModel(COLUMNS)
    proxy = FilterProxy()
    proxy.setSourceModel(plain)
    proxy.sort(0, Qt.SortOrder.AscendingOrder)
    timed("load rows (sorted by domain)", lambda: plain.set_rows(rows))
    timed("sort by User", lambda: proxy.sort(3, Qt.SortOrder.DescendingOrder))
    timed("filter keystroke 'd0999'", lambda: proxy.setFilterFixedString("d0999"))
    timed("clear filter", lambda: proxy.setFilterFixedString(""))
    app.quit()


if __name__ == "__main__":
    main()
