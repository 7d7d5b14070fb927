"""Migration 0003: old statuses become the engine's, duplicates go, names get keys."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from app.models import User, UserGroup
from app.models import database as database_module
from app.models.database import Database


def _config() -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(database_module.__file__).parent / "migrations")
    )
    return config


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
    engine.dispose()


def test_upgrade_renames_statuses_drops_duplicates_and_keys_names(db_url: str) -> None:
    db = Database(db_url)
    with db.transaction() as s:
        s.add(User(username="alice", email="a@example.com", group=UserGroup(name="G")))
    db.dispose()
    _migrate(db_url, "0002", down=True)  # the downgrade runs too

    engine = create_engine(db_url)
    with engine.begin() as c:
        user_id = c.execute(text("SELECT id FROM users")).scalar_one()
        for name, status in (("Spring", "sending"), ("Old", "sent"), ("spring", "failed")):
            c.execute(
                text(
                    "INSERT INTO campaigns (user_id, name, channel, status, from_email, "
                    "subject, version) VALUES (:u, :n, 'marketing', :s, 'a@example.com', "
                    "'Hi', 1)"
                ),
                {"u": user_id, "n": name, "s": status},
            )
        campaign_id = c.execute(text("SELECT min(id) FROM campaigns")).scalar_one()
        for recipient, status in (
            ("x@example.com", "pending"),
            ("y@example.com", "sending"),
            ("x@example.com", "pending"),  # a duplicate the old schema let in
            ("z@example.com", "sent"),
        ):
            c.execute(
                text(
                    "INSERT INTO queue_items (campaign_id, recipient, status, attempts, "
                    "message_id) VALUES (:c, :r, :s, 0, '<m@example.com>')"
                ),
                {"c": campaign_id, "r": recipient, "s": status},
            )
    engine.dispose()

    Database(db_url).dispose()  # migrates to the head

    engine = create_engine(db_url)
    with engine.connect() as c:
        campaigns = dict(c.execute(text("SELECT name, status FROM campaigns")).all())
        keys = dict(c.execute(text("SELECT name, name_key FROM campaigns")).all())
        items = sorted(
            c.execute(text("SELECT recipient, status, next_attempt_at FROM queue_items")).all()
        )
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("queue_items")}
    engine.dispose()
    assert campaigns == {"Spring": "running", "Old": "completed", "spring": "completed"}
    assert keys["Spring"] == "spring" and keys["spring"].startswith("spring\x1f")
    assert [(r, s) for r, s, _ in items] == [
        ("x@example.com", "queued"),
        ("y@example.com", "in_flight"),
        ("z@example.com", "sent"),
    ]
    assert items[0][2] is not None  # queued rows are due from the upgrade on
    assert {
        "uq_queue_items_campaign_id_recipient",
        "ix_queue_items_claimable",
        "ix_queue_items_lease_owner",
    } <= indexes
    assert "ix_queue_items_claim" not in indexes
