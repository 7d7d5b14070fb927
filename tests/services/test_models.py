"""The schema migrates, seeds and round-trips on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm.exc import StaleDataError

from app.models import (
    DeliveryServer,
    DnsSettings,
    DnsTemplate,
    Encryption,
    Installation,
    TemplateKind,
    TestStatus,
    User,
    UserGroup,
)
from app.models.base import name_key
from app.models.database import Database


def test_fresh_database_is_seeded(database: Database) -> None:
    with database.session() as session:
        templates = {(t.kind, t.name): t for t in session.scalars(select(DnsTemplate))}
        campaign = templates[(TemplateKind.CAMPAIGN, "Default")]
        gateway = templates[(TemplateKind.GATEWAY, "Default")]
        assert [r.type for r in campaign.records] == ["CNAME", "CNAME", "CNAME", "CNAME", "TXT"]
        assert gateway.records == []
        settings = session.get(DnsSettings, 1)
        assert settings is not None
        assert settings.dkim_selector == "key1"
        assert settings.spf_include == "include:spf.yourdomain.com"
        installation = session.scalars(select(Installation)).one()
        assert len(installation.installation_id) == 36
        assert len(installation.hash_secret) >= 32


def test_upgrade_is_idempotent(db_url: str) -> None:
    first = Database(db_url)
    with first.session() as session:
        first_id = session.scalars(select(Installation.installation_id)).one()
    first.dispose()
    second = Database(db_url)  # upgrade on connect again: nothing re-seeded
    with second.session() as session:
        assert session.scalars(select(Installation.installation_id)).all() == [first_id]
        assert len(session.scalars(select(DnsTemplate)).all()) == 2
    tables = set(inspect(second.engine).get_table_names())
    assert {
        "delivery_servers",
        "user_groups",
        "sender_domains",
        "queue_items",
        "user_send_counts",
        "server_send_counts",
    } <= tables
    second.dispose()


def test_datetimes_come_back_as_aware_utc(database: Database) -> None:
    moment = datetime(2026, 11, 27, 10, 30, 15, tzinfo=UTC)
    with database.transaction() as session:
        server = DeliveryServer(
            name="s", host="smtp.example.com", port=587, encryption=Encryption.TLS
        )
        server.last_test_at = moment
        server.last_test_status = TestStatus.OK
        session.add(server)
    with database.session() as session:
        loaded = session.scalars(select(DeliveryServer)).one()
        assert loaded.last_test_at == moment
        assert loaded.last_test_at.tzinfo is not None
        assert loaded.created_at.tzinfo is not None


def test_version_column_detects_concurrent_edit(database: Database) -> None:
    """Two consoles read the same row; the second save must not overwrite the first."""
    with database.transaction() as session:
        session.add(DeliveryServer(name="s", host="h.example.com", port=25))
    with database.session() as session:
        console_a = session.scalars(select(DeliveryServer)).one()
    with database.session() as session:
        console_b = session.scalars(select(DeliveryServer)).one()
    with database.transaction() as session:
        session.add(console_a)
        console_a.port = 2525
    assert console_a.version == 2
    with pytest.raises(StaleDataError), database.transaction() as session:
        session.add(console_b)
        console_b.port = 465
    with database.session() as session:
        assert session.scalars(select(DeliveryServer)).one().port == 2525


def test_schema_head_constant_matches_migrations(sqlite_url: str) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.models import database as database_module

    config = Config()
    config.set_main_option(
        "script_location", str(Path(database_module.__file__).parent / "migrations")
    )
    assert ScriptDirectory.from_config(config).get_current_head() == database_module.SCHEMA_HEAD
    db = Database(sqlite_url)
    assert database_module.schema_revision(db.engine) == database_module.SCHEMA_HEAD
    db.dispose()


def test_migrated_schema_matches_the_models(database: Database) -> None:
    """What the migrations build is what the models declare, on every backend; SQLite only
    keeps the name keys nullable (it cannot make an added column NOT NULL in place)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.models import Base

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    if database.backend == "sqlite":
        differences = [
            change
            for change in differences
            if not (
                isinstance(change, list)
                and [(c[0], c[3]) for c in change] == [("modify_nullable", "name_key")]
            )
        ]
    assert differences == []


@pytest.mark.parametrize(
    ("model", "column"),
    [(DeliveryServer, "name"), (UserGroup, "name"), (User, "username"), (DnsTemplate, "name")],
)
def test_every_named_model_keeps_its_name_key_with_its_name(model: type, column: str) -> None:
    """One validator (base.keeps_name_key) for every named table: set and renamed alike."""
    row = model(**{column: "ﬁLE"})
    assert row.name_key == name_key("ﬁLE") == "file"
    setattr(row, column, "Straße")
    assert row.name_key == "strasse"
