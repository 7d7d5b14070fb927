# Alembic imports the migration scripts from source files inside the bundle; as root (a
# package's post-install smoke test, an admin) Python would write __pycache__ folders there,
# which the package manager does not know about and would leave behind on removal.
import sys

sys.dont_write_bytecode = True
