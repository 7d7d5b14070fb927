"""Entry point of the frozen ``postroom`` executable: the same command line as the wheel's."""

from app.cli import main

main(prog_name="postroom")
