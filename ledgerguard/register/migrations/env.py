"""Alembic environment for the LedgerGuard register.

Normally run in code by ``ledgerguard.register.db.upgrade()``, which hands over an open connection
in ``config.attributes["connection"]``. Running the ``alembic`` command line also works when the
config names ``sqlalchemy.url`` (or LEDGERGUARD_REGISTER_URL / the default settings are used).
"""

from __future__ import annotations

from alembic import context

from ledgerguard.register.db import VERSION_TABLE, make_engine
from ledgerguard.register.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite needs batch mode for ALTER in later revisions
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from ledgerguard.config import get_settings

        url = get_settings().register
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    try:
        with engine.begin() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
