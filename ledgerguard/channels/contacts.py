"""The agency's contacts (``contacts.yaml``) and routing: roles → people → their channels.

Example ``contacts.yaml``::

    people:
      - id: wang.fang
        name: 王芳
        roles: [manager]
        email: wang.fang@agency.example
        phone: "13812345678"
        wecom: wecombot://KEY            # optional apprise URLs, one per chat channel
        dingtalk: dingtalk://TOKEN
        slack: slack://T000/B000/XXXX
        webhook: json://127.0.0.1:9999/hook
        channels: [email, wecom]         # contact points to use, in order; default [email]
    management_list: [owner@agency.example]   # receives every per-run report
    drill_recipients: [drill@agency.example]  # optional

A role that is not a staff role (``client_accountant``: the accountant responsible for the affected
clients) is resolved through ``extra_people`` supplied by the caller.
"""

from __future__ import annotations

import enum

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CHANNELS",
    "ChannelName",
    "Contacts",
    "ContactsError",
    "channel_for_address",
    "Person",
    "Recipient",
    "Routing",
    "drill_recipients",
    "load_contacts",
    "management_recipients",
    "resolve_recipients",
]

ChannelName = Literal["email", "wecom", "dingtalk", "slack", "webhook"]
CHANNELS: tuple[str, ...] = ("email", "wecom", "dingtalk", "slack", "webhook")


class Role(str, enum.Enum):
    """The agency's roles, as the catalog's routing names them (``client_accountant`` is
    resolved per incident from clients.csv and is not a role a person holds)."""

    OWNER = "owner"
    MANAGER = "manager"
    DUTY_LEAD = "duty_lead"
    IT = "it"
    ACCOUNTANTS = "accountants"
    HR = "hr"
    LEGAL = "legal"
    DATA_PROTECTION = "data_protection"
    REVIEWER = "reviewer"


class ContactsError(ValueError):
    """contacts.yaml could not be read or is invalid; the message names the file and the field."""


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    email: str | None = None
    phone: str | None = None
    wecom: str | None = None
    dingtalk: str | None = None
    slack: str | None = None
    webhook: str | None = None
    channels: list[ChannelName] = Field(
        default_factory=lambda: ["email"],
        description="contact points to use, in order; default [email] (or the first chat channel set)",
    )

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, v: list[str]) -> list[str]:
        known = {r.value for r in Role}
        unknown = [r for r in v if r not in known]
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return v

    @field_validator("email")
    @classmethod
    def _email_shape(cls, v: str | None) -> str | None:
        if v is not None and ("@" not in v or v.startswith("@") or v.endswith("@")):
            raise ValueError(f"not an email address: {v!r}")
        return v

    @field_validator("phone", mode="before")
    @classmethod
    def _phone_as_text(cls, v: object) -> object:
        # YAML reads an unquoted 13812345678 as an int; keep it as text.
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _channels_have_addresses(self) -> "Person":
        if "channels" not in self.model_fields_set:
            # Default: email; a person without an email uses the first chat channel they have.
            available = [ch for ch in CHANNELS if getattr(self, ch)]
            if not available:
                raise ValueError("no contact point: set email or one of wecom, dingtalk, slack, webhook")
            self.channels = ["email"] if self.email else [available[0]]  # type: ignore[list-item]
            return self
        if not self.channels:
            raise ValueError("channels is empty: list at least one contact point")
        missing = [ch for ch in self.channels if not getattr(self, ch)]
        if missing:
            raise ValueError(
                f"channels lists {', '.join(missing)} but no address is set for "
                + ", ".join(missing)
            )
        return self

    def address(self, channel: str) -> str | None:
        return getattr(self, channel, None)


class Contacts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[Person] = Field(default_factory=list)
    management_list: list[str] = Field(default_factory=list, description="email addresses or apprise URLs")
    drill_recipients: list[str] = Field(default_factory=list, description="email addresses or apprise URLs")

    @model_validator(mode="after")
    def _unique_ids(self) -> "Contacts":
        seen: set[str] = set()
        for p in self.people:
            if p.id in seen:
                raise ValueError(f"person id {p.id!r} appears twice")
            seen.add(p.id)
        return self

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def with_role(self, role: Role | str) -> list[Person]:
        value = Role(role).value
        return [p for p in self.people if value in p.roles]


@dataclass(frozen=True)
class Recipient:
    """One contact point to send to. ``address`` is an email address or an apprise URL."""

    person_id: str
    name: str
    role: str
    channel: str
    address: str


@dataclass
class Routing:
    """Who to send to, and the roles nobody could be found for (report these, never drop them)."""

    recipients: list[Recipient] = field(default_factory=list)
    unresolved_roles: list[str] = field(default_factory=list)

    def __iter__(self):  # allows ``recipients, unresolved = resolve_recipients(...)``
        return iter((self.recipients, self.unresolved_roles))


def _describe(err: ValidationError, path: Path, data: object) -> str:
    lines = [f"{path}: invalid contacts file"]
    for e in err.errors():
        loc = list(e.get("loc", ()))
        # Name people by their id rather than a list index where we can.
        where = []
        node: object = data
        for part in loc:
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                item = node[part]
                where.append(f"[{part}]" + (f"(id={item['id']})" if isinstance(item, dict) and "id" in item else ""))
                node = item
            else:
                where.append(("." if where else "") + str(part))
                node = node.get(part) if isinstance(node, dict) else None
        field_path = "".join(where) or "(top level)"
        lines.append(f"  field {field_path}: {e.get('msg')}")
    return "\n".join(lines)


def load_contacts(path: Path | str) -> Contacts:
    """Read and validate ``contacts.yaml``. Raises :class:`ContactsError` naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContactsError(f"{path}: cannot read contacts file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContactsError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ContactsError(f"{path}: expected a mapping with 'people', got {type(data).__name__}")
    try:
        return Contacts.model_validate(data)
    except ValidationError as exc:
        raise ContactsError(_describe(exc, path, data)) from exc


def _person_recipients(person: Person, role: str) -> list[Recipient]:
    return [
        Recipient(person_id=person.id, name=person.name, role=role, channel=ch, address=person.address(ch) or "")
        for ch in person.channels
        if person.address(ch)
    ]


def resolve_recipients(
    *,
    contacts: Contacts,
    roles: list[str],
    extra_people: dict[str, list[str]] | None = None,
    on_call: dict[str, str] | None = None,
) -> Routing:
    """Roles → people → their channels, in role order, each (person, channel) once.

    ``extra_people`` maps a role that is not a staff role (e.g. ``client_accountant``) to person
    ids. ``on_call`` maps a role on a rotation to the one person on call for it: only that
    person is reached for the role, not everyone who holds it. A role that matches nobody (or
    only unknown person ids) lands in ``unresolved_roles``.
    """
    extra_people = {**(extra_people or {}), **{role: [pid] for role, pid in (on_call or {}).items()}}
    recipients: list[Recipient] = []
    unresolved: list[str] = []
    seen: set[tuple[str, str]] = set()
    for role in roles:
        people: list[Person] = []
        if role in extra_people:
            for pid in extra_people[role]:
                person = contacts.person(pid)
                if person is not None and person not in people:
                    people.append(person)
        if role not in (on_call or {}):
            people += [p for p in contacts.people if role in p.roles and p not in people]
        found = False
        for person in people:
            for r in _person_recipients(person, role):
                found = True
                key = (r.person_id, r.channel)
                if key not in seen:
                    seen.add(key)
                    recipients.append(r)
        if not found and role not in unresolved:
            unresolved.append(role)
    return Routing(recipients=recipients, unresolved_roles=unresolved)


_SCHEME_CHANNELS = {
    "mailto": "email", "mailtos": "email", "wecombot": "wecom", "dingtalk": "dingtalk",
    "slack": "slack", "json": "webhook", "jsons": "webhook",
}


def channel_for_address(address: str) -> str:
    """``email`` for a plain address, else the channel named by the apprise URL's scheme."""
    if "://" not in address:
        return "email"
    scheme = address.split("://", 1)[0].lower()
    return _SCHEME_CHANNELS.get(scheme, scheme)


def _list_recipients(addresses: list[str], role: str, contacts: Contacts) -> list[Recipient]:
    out: list[Recipient] = []
    seen: set[str] = set()
    for addr in addresses:
        if addr in seen:
            continue
        seen.add(addr)
        person = next((p for p in contacts.people if p.email and p.email.lower() == addr.lower()), None)
        out.append(
            Recipient(
                person_id=person.id if person else addr,
                name=person.name if person else addr,
                role=role,
                channel=channel_for_address(addr),
                address=addr,
            )
        )
    return out


def management_recipients(contacts: Contacts) -> list[Recipient]:
    """The management list as email recipients (the per-run report goes to each of them)."""
    return _list_recipients(contacts.management_list, "management", contacts)


def drill_recipients(contacts: Contacts) -> list[Recipient]:
    """The drill list as email recipients (empty when contacts.yaml has none)."""
    return _list_recipients(contacts.drill_recipients, "drill", contacts)
