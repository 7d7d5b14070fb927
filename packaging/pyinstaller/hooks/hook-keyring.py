"""keyring finds its backends (its own included) through the ``keyring.backends`` entry
points, read from the installed distributions' metadata. Freezing keeps neither the
metadata nor the backend modules, which nothing imports by name; without both, the frozen
app would find only the fail backend and refuse to keep secrets."""

import sys

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

datas = copy_metadata("keyring")
hiddenimports = collect_submodules("keyring.backends")

if sys.platform.startswith("linux"):
    # The Secret Service backend (gnome-keyring, KWallet's secrets API) speaks D-Bus through
    # these; keyring imports them lazily, inside the backend's viability check.
    datas += copy_metadata("SecretStorage") + copy_metadata("jeepney")
    hiddenimports += collect_submodules("secretstorage") + collect_submodules(
        "jeepney",
        # the trio and asyncio front ends, and jeepney's tests, are not what keyring uses
        filter=lambda name: not name.startswith(("jeepney.io.trio", "jeepney.tests")),
    )
