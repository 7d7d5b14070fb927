"""``python -m app`` runs the same command line as ``postroom``."""

from app.cli import main

main(prog_name="postroom")
