"""The ``postroom`` command line: the same service calls the console makes.

``base`` holds the root group ``main``, its options and the shared output helpers; each
other module is one command group and hangs itself on ``main``. Importing them here is what
registers them, so ``postroom`` (``app.cli:main``) and ``python -m app`` see every command.
"""

from app.cli import (
    audit,
    campaigns,
    checks,
    config,
    dns_settings,
    domains,
    groups,
    gui,
    profiles,
    route,
    servers,
    templates,
    users,
    vault,
)
from app.cli.base import main

# Importing a command module is what registers its commands; listing them says so (and is
# the one place to add the next group's module).
COMMAND_MODULES = (
    audit,
    campaigns,
    checks,
    config,
    dns_settings,
    domains,
    groups,
    gui,
    profiles,
    route,
    servers,
    templates,
    users,
    vault,
)

__all__ = ["COMMAND_MODULES", "main"]
