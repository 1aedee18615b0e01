"""Settings, read from the environment (prefix ``LEDGERGUARD_``) with sensible embedded defaults.

Everything an installation keeps on disk lives under one home folder:

    <home>/register.sqlite   the register (unless LEDGERGUARD_REGISTER_URL names another database)
    <home>/agency/           the agency's data: agency.yaml, clients.csv, contacts.yaml, ledgers/, backups/
    <home>/mail/             .eml files written by the local SMTP sink
    <home>/reports/          rendered per-run reports and post-mortems
    <home>/scratch/          staging copies and test restores
    <home>/prefect/          PREFECT_HOME of the embedded Prefect server
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERGUARD_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".ledgerguard")
    register_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite file in home by default")
    catalog_dir: Path = PROJECT_ROOT / "catalog"
    templates_dir: Path = PROJECT_ROOT / "templates"
    agency_dir: Path | None = None
    contacts_file: Path | None = None
    scratch: Path | None = Field(default=None, description="staging copies and test restores; default <home>/scratch")
    language: Literal["zh-CN", "en"] = "zh-CN"
    timezone: str = "Asia/Shanghai"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: bool = False
    smtp_timeout_seconds: int = 5
    mail_from: str = "ledgerguard@agency.example"

    public_url: str | None = Field(
        default=None, description="how recipients reach the intake (one-click acknowledgement links); "
                                  "default http://<intake host>:<intake port>")
    ack_link_key: SecretStr | None = Field(
        default=None, description="signing key of acknowledgement links; default a random key in "
                                  "<home>/secrets/ack-link.key (give every machine of a scale-out set the same)")
    ack_link_hours: float = Field(default=24, gt=0, le=24 * 30, description="how long an acknowledgement link works")
    ui_url: str | None = Field(default=None, description="the Prefect UI as recipients reach it (links to the "
                                                         "run's forms); default from PREFECT_UI_URL / PREFECT_API_URL")

    report_when_clear: bool = Field(default=True, description="email a report for runs that found nothing")
    schedules_active: bool = Field(default=True, description="register the deployments' schedules (sweeps, "
                                   "reports) active; false serves them paused, to switch on in the UI: events and "
                                   "manual runs still start flows (a standby machine, a migration, the tests)")
    flow_run_limit: int = Field(
        default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)), ge=0,
        description="most flow runs `serve` starts at once (0: no limit). Every run is a process that "
                    "imports Prefect and pandas; in an alert storm the rest wait in Prefect as Scheduled "
                    "instead of starving the intake and the server of CPU")

    @property
    def agency_path(self) -> Path:
        return self.agency_dir or self.home / "agency"

    @property
    def contacts_path(self) -> Path:
        return self.contacts_file or self.agency_path / "contacts.yaml"

    @property
    def register(self) -> str:
        return self.register_url or f"sqlite:///{self.home / 'register.sqlite'}"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def scratch_dir(self) -> Path:
        return self.scratch or self.home / "scratch"

    @property
    def link_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = os.environ.get("LEDGERGUARD_INTAKE_HOST", "127.0.0.1")
        port = os.environ.get("LEDGERGUARD_INTAKE_PORT", "8600")
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings, e.g. after a test changes the environment."""
    get_settings.cache_clear()
