"""The ``postroom`` command line: the same service calls the console makes.

``base`` holds the root group ``main``, its options and the shared output helpers; each
other module is one command group and hangs itself on ``main``. Importing them here is what
registers them, so ``postroom`` (``app.cli:main``) and ``python -m app`` see every command.
"""

# Importing a command module is what registers its commands on ``main``; this list is the
# one place to add the next group's module.
from app.cli import (  # noqa: F401
    audit,
    campaigns,
    checks,
    config,
    diagnose,
    dns_settings,
    domains,
    engine,
    groups,
    gui,
    profiles,
    route,
    sendengine,
    servers,
    templates,
    users,
    vault,
)
from app.cli.base import main

__all__ = ["main"]
