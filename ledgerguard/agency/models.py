"""The agency's own data, as pydantic models: agency.yaml, clients.csv rows, contacts.yaml,
filing-tracker.csv rows.

Validation errors are turned into :class:`AgencyDataError`, which names the file and the field.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_BACKUP_COMMAND = ["{python}", "-m", "ledgerguard.backups", "run", "--agency", "{agency_dir}"]

# 统一社会信用代码 (GB 32100-2015): 31 characters, no I, O, S, V, Z.
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_CODE_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
_ORG_CODE_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
_CREDIT_CODE_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


class AgencyDataError(ValueError):
    """A file of the agency folder is missing or invalid; names the file and the field."""

    def __init__(self, file: Path | str, message: str, *, field: str | None = None):
        self.file = str(file)
        self.field = field
        where = f"{self.file}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


class UnknownClientError(KeyError):
    """A client id that clients.csv does not list."""

    def __init__(self, client_id: str, file: Path | str):
        self.client_id = client_id
        self.file = str(file)
        super().__init__(client_id)

    def __str__(self) -> str:
        return f"unknown client {self.client_id!r}: not listed in {self.file}"


def org_code_check_char(body: str) -> str:
    """Check character of a 9-character organisation code (GB 11714) from its 8-char body."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w if c.isdigit() else (ord(c) - 55) * w
                for c, w in zip(body, _ORG_CODE_WEIGHTS))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def credit_code_check_char(first17: str) -> str:
    """Check character (18th) of a 统一社会信用代码 from its first 17 characters."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, _CREDIT_CODE_WEIGHTS))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def is_valid_credit_code(code: str) -> bool:
    """True when ``code`` has the 统一社会信用代码 shape and a correct check character."""
    if not isinstance(code, str) or not _CREDIT_CODE_RE.match(code):
        return False
    return credit_code_check_char(code[:17]) == code[17]


class Agency(BaseModel):
    """agency.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    ledgers_dir: str = "ledgers"
    backups_dir: str = "backups"
    backup_command: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKUP_COMMAND),
                                      description="argv; {python}, {agency_dir}, {backups_dir} "
                                                  "are expanded at run time")
    backup_timeout_seconds: int = Field(default=1800, gt=0)
    rpo_hours: float = Field(default=24, gt=0)
    keep_backups: int = Field(default=7, ge=1)
    clients_file: str = "clients.csv"
    contacts_file: str = "contacts.yaml"
    filing_tracker: str = "filing-tracker.csv"
    data_files: dict[str, str] = Field(
        default_factory=dict,
        description="where the data sets the detectors read live, by name (e.g. auth_log: logs/auth.csv), "
                    "relative to the agency folder or absolute; each data source has its own default")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("backup_command")
    @classmethod
    def _non_empty_command(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("backup_command must name a program")
        return value


class Client(BaseModel):
    """One row of clients.csv. Supports ``client["accountant_id"]`` as well as attributes."""

    model_config = ConfigDict(extra="ignore")

    client_id: str = Field(pattern=r"^C\d{4,}$")
    name: str = Field(min_length=1)
    credit_code: str
    tier: str = "standard"
    vip: bool = False
    accountant_id: str
    legal_rep: str = ""
    phone: str = ""
    employees: int = Field(default=0, ge=0)
    ledger_file: str = ""

    @field_validator("credit_code")
    @classmethod
    def _credit_code(cls, value: str) -> str:
        value = str(value).strip().upper()
        if not is_valid_credit_code(value):
            raise ValueError(f"{value!r} is not a valid 统一社会信用代码 (18 chars, GB 32100 check digit)")
        return value

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


CLIENT_COLUMNS = list(Client.model_fields)


class FilingStatus(str, enum.Enum):
    FILED = "filed"
    UNFILED = "unfiled"


class FilingRecord(BaseModel):
    """One row of filing-tracker.csv."""

    model_config = ConfigDict(extra="ignore")

    client_id: str = Field(pattern=r"^C\d{4,}$")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    tax: str
    status: FilingStatus
    filed_at: datetime | None = None
    tax_due: float | None = Field(default=None, ge=0, description="tax due in yuan (the 滞纳金 base)")


FILING_COLUMNS = list(FilingRecord.model_fields)


def validation_error(file: Path | str, exc: ValidationError, *, row: int | None = None,
                     row_label: str = "row") -> AgencyDataError:
    """Turn a pydantic error into one naming the file, the row (if any) and the field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    prefix = f"{row_label} {row}: " if row is not None else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return AgencyDataError(file, f"{prefix}{first.get('msg')}{more}", field=field)


def validate_rows(model: type[BaseModel], rows: Iterable[dict[str, Any]], file: Path | str,
                  *, first_row: int = 2) -> list[BaseModel]:
    """Validate CSV rows (``first_row`` is the line number of the first data row)."""
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(model.model_validate(row))
        except ValidationError as exc:
            raise validation_error(file, exc, row=first_row + i, row_label="line") from None
    return out
