"""Load an agency folder from disk: agency.yaml, clients.csv, contacts.yaml, filing-tracker.csv."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from pydantic import ValidationError

from ledgerguard.channels.contacts import Contacts, ContactsError
from ledgerguard.channels.contacts import load_contacts as load_channel_contacts
from ledgerguard.agency.models import (
    CLIENT_COLUMNS,
    FILING_COLUMNS,
    Agency,
    AgencyDataError,
    Client,
    FilingRecord,
    UnknownClientError,
    validate_rows,
    validation_error,
)

AGENCY_FILE = "agency.yaml"


@dataclass
class LoadedAgency:
    """An agency folder, validated. ``clients`` is a DataFrame with one row per client."""

    root: Path
    config: Agency
    clients: pd.DataFrame
    contacts: Contacts
    _by_id: dict[str, Client] = field(default_factory=dict, repr=False)

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / AGENCY_FILE

    @property
    def clients_path(self) -> Path:
        return self.root / self.config.clients_file

    @property
    def contacts_path(self) -> Path:
        return self.root / self.config.contacts_file

    @property
    def filing_tracker_path(self) -> Path:
        return self.root / self.config.filing_tracker

    @property
    def ledgers_path(self) -> Path:
        return self.root / self.config.ledgers_dir

    @property
    def backups_path(self) -> Path:
        return self.root / self.config.backups_dir

    def data_file(self, name: str, default: str) -> Path:
        """Path of the data set ``name``: ``data_files`` in agency.yaml, else ``default``."""
        return self.root / self.config.data_files.get(name, default)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    # -- clients ---------------------------------------------------------------------------
    @property
    def client_ids(self) -> list[str]:
        return list(self._by_id)

    def client(self, client_id: str) -> Client:
        """The client's row; raises :class:`UnknownClientError` naming clients.csv and the id."""
        try:
            return self._by_id[client_id]
        except KeyError:
            raise UnknownClientError(client_id, self.clients_path) from None

    def has_client(self, client_id: str) -> bool:
        return client_id in self._by_id

    def is_vip(self, client_id: str) -> bool:
        c = self._by_id.get(client_id)
        return bool(c and c.vip)

    def ledger_path(self, client_id: str) -> Path:
        """Path of the client's SQLite ledger (``ledgers/<client_id>.sqlite`` unless clients.csv
        names another file)."""
        c = self.client(client_id)
        return self.ledgers_path / (c.ledger_file or f"{client_id}.sqlite")

    def frozen_marker(self, client_id: str) -> Path:
        return self.ledgers_path / f"{client_id}.frozen"

    # -- other files --------------------------------------------------------------------------
    def filings(self) -> pd.DataFrame:
        """filing-tracker.csv, validated (columns client_id, period, tax, status, filed_at)."""
        return load_filing_tracker(self.filing_tracker_path)

    def backup_argv(self) -> list[str]:
        """The backup command with its placeholders expanded."""
        values = {"python": sys.executable, "agency_dir": str(self.root),
                  "backups_dir": str(self.backups_path)}
        try:
            return [part.format(**values) for part in self.config.backup_command]
        except (KeyError, IndexError, ValueError) as exc:
            raise AgencyDataError(self.config_path, f"bad placeholder in backup_command: {exc}",
                                  field="backup_command") from None

    def reload(self) -> "LoadedAgency":
        return load_agency(self.root)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise AgencyDataError(path, "file not found")
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise AgencyDataError(path, f"not valid YAML: {exc}") from None


def load_agency_config(root: Path | str) -> Agency:
    path = Path(root) / AGENCY_FILE
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise AgencyDataError(path, "expected a mapping at the top level")
    try:
        return Agency.model_validate(data)
    except ValidationError as exc:
        raise validation_error(path, exc) from None


def save_agency_config(root: Path | str, config: Agency) -> Path:
    """Write agency.yaml atomically (tmp + rename)."""
    path = Path(root) / AGENCY_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_clients(path: Path) -> tuple[pd.DataFrame, dict[str, Client]]:
    if not path.is_file():
        raise AgencyDataError(path, "file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except Exception as exc:  # noqa: BLE001 — pandas raises many kinds
        raise AgencyDataError(path, f"not a readable CSV: {exc}") from None
    for required in ("client_id", "name", "credit_code", "accountant_id"):
        if required not in raw.columns:
            raise AgencyDataError(path, "required column missing", field=required)
    rows = [{k: v for k, v in r.items() if v != ""} for r in raw.to_dict(orient="records")]
    clients = validate_rows(Client, rows, path)
    by_id: dict[str, Client] = {}
    for line, c in enumerate(clients, start=2):
        if c.client_id in by_id:
            raise AgencyDataError(path, f"line {line}: duplicate client id {c.client_id!r}",
                                  field="client_id")
        by_id[c.client_id] = c
    df = pd.DataFrame([c.model_dump() for c in clients], columns=CLIENT_COLUMNS)
    df = df.astype({"vip": bool, "employees": int})
    return df, by_id


def load_contacts(path: Path) -> Contacts:
    """contacts.yaml, validated by the one schema the channels use to route notifications."""
    try:
        return load_channel_contacts(path)
    except ContactsError as exc:
        raise AgencyDataError(path, str(exc).removeprefix(f"{path}: ")) from None


def load_filing_tracker(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise AgencyDataError(path, "file not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    rows = [{k: v for k, v in r.items() if v != ""} for r in raw.to_dict(orient="records")]
    records = validate_rows(FilingRecord, rows, path)
    df = pd.DataFrame([r.model_dump() for r in records], columns=FILING_COLUMNS)
    df["status"] = df["status"].map(lambda s: s.value)
    df["filed_at"] = pd.to_datetime(df["filed_at"], utc=True)
    return df


def load_agency(path: Path | str) -> LoadedAgency:
    """Load and validate an agency folder. Errors are :class:`AgencyDataError` naming file and field."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise AgencyDataError(root, "agency folder not found")
    config = load_agency_config(root)
    clients, by_id = load_clients(root / config.clients_file)
    contacts = load_contacts(root / config.contacts_file)
    return LoadedAgency(root=root, config=config, clients=clients, contacts=contacts, _by_id=by_id)
