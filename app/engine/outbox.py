"""The legacy SaveToDisk send method: each message becomes an ``.eml`` file in a folder.

The reference keeps SaveToDisk among the legacy methods a group falls back to when it has
no delivery server for a channel; people use it to look at what would be sent. Files are
``<folder>/<campaign id>/<item id>.eml``, written under a temporary name and renamed, so
a reader never sees half a message and a retry replaces the file instead of adding one.
The envelope goes into ``X-Postroom-Envelope-From`` / ``-To`` lines at the top, where a
pickup-directory MTA or a person reading the file finds them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from app.models.database import default_sqlite_path

OUTBOX_ENV = "POSTROOM_EML_FOLDER"


def default_outbox() -> Path:
    """POSTROOM_EML_FOLDER, else ``outbox`` beside the default database."""
    configured = os.environ.get(OUTBOX_ENV)
    return Path(configured) if configured else default_sqlite_path().parent / "outbox"


def save_eml(
    folder: Path, campaign_id: int, item_id: int, envelope_from: str, recipient: str, data: bytes
) -> Path:
    """Write one message; returns its path. Raises OSError when the folder is unusable."""
    target_dir = folder / str(campaign_id)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{item_id}.eml"
    envelope = (
        f"X-Postroom-Envelope-From: <{envelope_from}>\r\nX-Postroom-Envelope-To: <{recipient}>\r\n"
    ).encode("ascii")
    handle, temporary = tempfile.mkstemp(dir=target_dir, prefix=f".{item_id}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(envelope)
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
