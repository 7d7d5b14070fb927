"""Entry point of the frozen windowed executable (Windows' Start menu, macOS' .app).

Started with no terminal, so it opens the console instead of printing the usage. A windowed
build has no stdout or stderr (None): give them a sink so that a print cannot fail.
"""

import os
import sys

from app.cli import main

if sys.stdout is None or sys.stderr is None:
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  (lives as long as the app)
    sys.stdout = sys.stdout or sink
    sys.stderr = sys.stderr or sink

# Its arguments are the root options (--database URL, --profile NAME), which come first.
main([*sys.argv[1:], "gui"], prog_name="postroom")
