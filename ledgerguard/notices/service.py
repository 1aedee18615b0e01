"""Notice drafts in the register: which notices an incident needs, their versions, and a person's
approval, rejection, sending and filing of one exact version.

Prefect-free. Every function that touches the register takes ``db_session`` and keyword arguments
only; the caller owns the transaction (``runtime.session()``). Rendering and delivery live in
:mod:`ledgerguard.notices.drafting` and :mod:`ledgerguard.notices.sending`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.models import Stage, utcnow
from ledgerguard.notices.models import (
    NeededNotice,
    NoticeKind,
    NoticePolicy,
    NoticeRefused,
    NoticeStatus,
)
from ledgerguard.register import service as register
from ledgerguard.register.models import NoticeDraft

__all__ = [
    "NOTICES_FILE",
    "NoticePolicyError",
    "approve",
    "check_policy",
    "content_sha256",
    "describe",
    "find_notice",
    "first_drafted_at",
    "fulfil_obligations",
    "latest_version",
    "list_notices",
    "load_policy",
    "mark_filed",
    "mark_sent",
    "mark_to_file",
    "missing_contents",
    "needed_notices",
    "on_demand_notices",
    "record_draft",
    "reject",
    "verify_file",
]

NOTICES_FILE = Path("notices") / "notices.yaml"
"""Relative to the catalog folder: a sub-folder, so the catalog scan does not take it for a type."""

MIN_ID_PREFIX = 6
OPEN_STATES = (NoticeStatus.DRAFTED.value, NoticeStatus.APPROVED.value)


class NoticePolicyError(ValueError):
    """notices.yaml is missing or invalid; ``problems`` lists (field, reason) pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]):
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {f or '(file)'}: {r}" for f, r in problems))


# --------------------------------------------------------------------------- the policy file


def _read_policy(path: Path) -> tuple[NoticePolicy | None, list[tuple[str, str]]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, [("", f"cannot read: {exc.strerror or exc}")]
    except yaml.YAMLError as exc:
        return None, [("", f"not valid YAML: {exc}")]
    if not isinstance(raw, dict):
        return None, [("", "the file must hold a mapping with kinds:")]
    try:
        return NoticePolicy.model_validate(raw), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in error.get("loc", ()) if not str(p).startswith("function-"))
            message = error.get("msg", "invalid").removeprefix("Value error, ")
            if error.get("type") == "extra_forbidden":
                message = "unknown field (check the spelling)"
            problems.append((loc, message))
        return None, problems


def load_policy(path: Path | str) -> NoticePolicy:
    """Read catalog/notices/notices.yaml; :class:`NoticePolicyError` names the file and each field."""
    policy, problems = _read_policy(Path(path))
    if policy is None:
        raise NoticePolicyError(Path(path), problems)
    return policy


def check_policy(path: Path | str, *, catalog=None, templates_dir: Path | None = None) -> list[tuple[str, str]]:
    """Every problem of the notices file: its schema, obligation ids the catalog does not know,
    and kinds whose template is missing in a language (``ledgerguard check``)."""
    policy, problems = _read_policy(Path(path))
    if policy is None:
        return problems
    if catalog is not None:
        known = {o.id for o in catalog.rubric.obligations} | {o.id for e in catalog for o in e.obligations}
        for kind_id, kind in policy.kinds.items():
            for label in ("raised_by", "fulfils"):
                for i, ob in enumerate(getattr(kind, label)):
                    if ob not in known:
                        problems.append((f"kinds.{kind_id}.{label}.{i}",
                                         f"unknown obligation {ob!r}: neither rubric.yaml nor a type file has it"))
    if templates_dir is not None and (Path(templates_dir) / "zh-CN").is_dir():
        # zh-CN is the default every other language falls back to (channels.messaging).
        for kind_id, kind in policy.kinds.items():
            if not any((Path(templates_dir) / "zh-CN").glob(f"{kind.template}.*.j2")):
                problems.append((f"kinds.{kind_id}.template", f"no template templates/zh-CN/{kind.template}.*.j2"))
    return problems


# --------------------------------------------------------------------------- what is needed


def needed_notices(*, policy: NoticePolicy, entry, incident: dict[str, Any],
                   obligations: list[dict[str, Any]]) -> list[NeededNotice]:
    """The notices an incident needs now, from its obligations and the type's routing.

    ``incident`` and ``obligations`` are the snapshot's (plain data). On-demand kinds (a CAC
    report for an incident below the reporting threshold) are drafted only when a person asks.
    """
    held = {str(o.get("obligation_id") or "") for o in obligations}
    level = incident.get("level")
    out: list[NeededNotice] = []
    for kind_id, kind in policy.kinds.items():
        template = _template_for(kind, entry)
        if template is None:
            continue
        because = next((ob for ob in kind.raised_by if ob in held), None)
        if because is None and kind.from_routing and level is not None and entry.routing.notify_clients(level):
            because = "routing"
        if because is None:
            continue
        for audience in _audiences(kind, incident):
            out.append(NeededNotice(kind=kind_id, audience=audience, template=template, because=because))
    return out


def on_demand_notices(*, policy: NoticePolicy, entry, incident: dict[str, Any], kind: str) -> list[NeededNotice]:
    """A notice a person asks for: any on-demand kind (or one the incident needs anyway)."""
    spec = policy.kind(kind)
    template = _template_for(spec, entry)
    if template is None:
        raise NoticeRefused(f"kind {kind!r}: the type {entry.id} drafts none (its templates.{spec.catalog_template} "
                            f"is null)")
    if not spec.on_demand:
        raise NoticeRefused(f"kind {kind!r} is drafted only when the incident's obligations call for it "
                            f"(raised by {', '.join(spec.raised_by) or 'nothing'}); on demand: "
                            f"{', '.join(k for k, s in policy.kinds.items() if s.on_demand)}")
    return [NeededNotice(kind=kind, audience=a, template=template, because="on_demand")
            for a in _audiences(spec, incident)]


def _template_for(kind: NoticeKind, entry) -> str | None:
    if kind.catalog_template is None:
        return kind.template
    return getattr(entry.templates, kind.catalog_template)


def _audiences(kind: NoticeKind, incident: dict[str, Any]) -> list[str]:
    if kind.per == "client":
        return [str(c) for c in incident.get("affected_clients") or []]
    return [str(kind.audience)]


# --------------------------------------------------------------------------- contents


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def missing_contents(*, kind: NoticeKind, language: str, text: str) -> list[str]:
    """Required contents the text lacks, by their label in ``language``. A field must be followed
    by a value on its line (``报告单位：…``), so an empty field counts as missing."""
    missing = []
    for item in kind.contents:
        label = item.label(language)
        if item.field:
            # The value must be on the label's own line: [ \t], never \s, which would reach the next line.
            pattern = re.escape(label) + r"\**[ \t]*[:：][ \t]*\**[ \t]*[^\s*]"
            if not re.search(pattern, text):
                missing.append(label)
        elif label not in text:
            missing.append(label)
    return missing


def verify_file(row: NoticeDraft) -> str:
    """The draft's text when its file still holds exactly what was drafted; NoticeRefused naming
    the file otherwise (an approval is bound to those bytes)."""
    path = Path(row.path)
    try:
        data = path.read_bytes()
    except OSError:
        raise NoticeRefused(f"notice {row.id} v{row.version}: the draft file {path} is missing") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != row.content_sha256:
        raise NoticeRefused(
            f"notice {row.id} v{row.version}: the draft file {path} was changed after drafting "
            f"(SHA-256 {actual[:12]}…, drafted {row.content_sha256[:12]}…); nothing is approved or sent "
            f"from a changed file. Restore it with `ledgerguard notices draft {row.incident_id} --kind {row.kind}`")
    return data.decode("utf-8")


# --------------------------------------------------------------------------- register rows


def list_notices(*, db_session: Session, incident_id: str | None = None, include_superseded: bool = False,
                 kind: str | None = None) -> list[NoticeDraft]:
    query = select(NoticeDraft)
    if incident_id is not None:
        query = query.where(NoticeDraft.incident_id == incident_id)
    if kind is not None:
        query = query.where(NoticeDraft.kind == kind)
    if not include_superseded:
        query = query.where(NoticeDraft.status != NoticeStatus.SUPERSEDED.value)
    return list(db_session.scalars(query.order_by(NoticeDraft.drafted_at, NoticeDraft.kind, NoticeDraft.audience,
                                                  NoticeDraft.version)))


def find_notice(*, db_session: Session, ref: str, lock: bool = False) -> NoticeDraft:
    """The draft whose id is ``ref``, or the only one whose id starts with it (>= 6 characters)."""
    ref = (ref or "").strip()
    row = db_session.get(NoticeDraft, ref, with_for_update=lock) if ref else None
    if row is not None:
        return row
    if len(ref) < MIN_ID_PREFIX:
        raise register.NotFound(f"notice {ref!r} not found (a prefix needs at least {MIN_ID_PREFIX} characters)")
    found = list(db_session.scalars(select(NoticeDraft).where(NoticeDraft.id.startswith(ref, autoescape=True))
                                    .limit(3)))
    if not found:
        raise register.NotFound(f"notice {ref!r} not found in the register")
    if len(found) > 1:
        raise register.NotFound(f"notice prefix {ref!r} is ambiguous: {', '.join(r.id for r in found)}")
    return found[0]


def _versions(db_session: Session, incident_id: str, kind: str, audience: str) -> list[NoticeDraft]:
    return list(db_session.scalars(
        select(NoticeDraft).where(NoticeDraft.incident_id == incident_id, NoticeDraft.kind == kind,
                                  NoticeDraft.audience == audience).order_by(NoticeDraft.version)))


def first_drafted_at(*, db_session: Session, incident_id: str, kind: str, audience: str):
    """When this notice was first drafted (None before): a stable 'time of the report'."""
    rows = _versions(db_session, incident_id, kind, audience)
    return rows[0].drafted_at if rows else None


def latest_version(*, db_session: Session, incident_id: str, kind: str, audience: str) -> NoticeDraft | None:
    rows = _versions(db_session, incident_id, kind, audience)
    return rows[-1] if rows else None


def record_draft(*, db_session: Session, incident_id: str, kind: str, audience: str, language: str, sha256: str,
                 path_for, flow_run_id: str | None = None, drafted_by: str = "ledgerguard") -> tuple[NoticeDraft, bool]:
    """Record one rendered draft; returns (row, created).

    Unchanged content (the latest version has this hash) creates nothing, whatever that version's
    state: a re-run of the record stage must not ask anyone again. Changed content is version
    n+1; the older versions still waiting (drafted, approved) become superseded — an approval
    was given to other words — while sent and rejected ones stay what they are.
    ``path_for(version)`` names the new version's file.
    """
    rows = _versions(db_session, incident_id, kind, audience)
    if rows and rows[-1].content_sha256 == sha256:
        return rows[-1], False
    for old in rows:
        if old.status in OPEN_STATES:
            old.status = NoticeStatus.SUPERSEDED.value
    version = (rows[-1].version + 1) if rows else 1
    row = NoticeDraft(incident_id=incident_id, kind=kind, audience=audience, language=language, version=version,
                      content_sha256=sha256, path=str(path_for(version)), status=NoticeStatus.DRAFTED.value,
                      drafted_at=utcnow(), drafted_by=drafted_by, reason="", sent_to=[], flow_run_id=flow_run_id)
    db_session.add(row)
    db_session.flush()
    return row, True


def _approver(*, contacts, kind_id: str, kind: NoticeKind, by: str):
    """The person ``by`` when contacts.yaml lists them with a role that approves ``kind``."""
    person = contacts.person((by or "").strip())
    if person is None:
        known = ", ".join(p.id for p in contacts.people) or "none"
        raise NoticeRefused(f"by: unknown person {by!r}: not in contacts.yaml (people: {known})")
    if not kind.approving_roles() & set(person.roles):
        allowed = sorted({p.id for p in contacts.people if kind.approving_roles() & set(p.roles)})
        raise NoticeRefused(
            f"by: {person.id} ({', '.join(person.roles) or 'no role'}) may not approve a {kind_id} notice; "
            f"approving roles: {', '.join(kind.approvers)} ({', '.join(allowed) or 'nobody holds one'})")
    return person


def _timeline(db_session: Session, row: NoticeDraft, kind: str, message: str, actor: str,
              flow_run_id: str | None = None, **data) -> None:
    register.append_timeline(db_session=db_session, incident_id=row.incident_id, stage=Stage.RECORD.value,
                             kind=kind, actor=actor, message=message, flow_run_id=flow_run_id,
                             data={"notice_id": row.id, "kind": row.kind, "audience": row.audience,
                                   "version": row.version, "sha256": row.content_sha256, **data})


def _label(row: NoticeDraft) -> str:
    return f"{row.kind} notice{'' if row.audience in ('', row.kind) else ' for ' + row.audience} v{row.version}"


def approve(*, db_session: Session, notice_id: str, by: str, policy: NoticePolicy, contacts, reason: str = "",
            via: str = "cli", flow_run_id: str | None = None) -> NoticeDraft:
    """A person approves this exact version: its file must still hold the drafted bytes and every
    required content. Approving an approved version again changes nothing."""
    row = find_notice(db_session=db_session, ref=notice_id, lock=True)
    kind = policy.kind(row.kind)
    person = _approver(contacts=contacts, kind_id=row.kind, kind=kind, by=by)
    if row.status == NoticeStatus.APPROVED.value:
        verify_file(row)
        return row
    if row.status != NoticeStatus.DRAFTED.value:
        raise NoticeRefused(f"notice {row.id} v{row.version} is {row.status}; only a drafted notice can be approved"
                            + (" (a newer version replaced it: `ledgerguard notices list`)"
                               if row.status == NoticeStatus.SUPERSEDED.value else ""))
    text = verify_file(row)
    missing = missing_contents(kind=kind, language=row.language, text=text)
    if missing:
        raise NoticeRefused(f"notice {row.id} v{row.version} ({row.path}) lacks required contents: "
                            f"{', '.join(missing)}")
    row.status = NoticeStatus.APPROVED.value
    row.decided_by, row.decided_at, row.reason = person.id, utcnow(), reason or ""
    db_session.flush()
    _timeline(db_session, row, "notice.approved", f"{_label(row)} approved by {person.name} ({person.id}, {via})"
              + (f": {reason}" if reason else ""), actor=person.id, flow_run_id=flow_run_id, via=via)
    return row


def reject(*, db_session: Session, notice_id: str, by: str, reason: str, policy: NoticePolicy, contacts,
           via: str = "cli", flow_run_id: str | None = None) -> NoticeDraft:
    """A person rejects a version (drafted or approved, not yet sent), saying why; it goes nowhere."""
    if not (reason or "").strip():
        raise NoticeRefused("reason: say why the notice is rejected")
    row = find_notice(db_session=db_session, ref=notice_id, lock=True)
    person = _approver(contacts=contacts, kind_id=row.kind, kind=policy.kind(row.kind), by=by)
    if row.status not in OPEN_STATES:
        raise NoticeRefused(f"notice {row.id} v{row.version} is {row.status}; only a drafted or approved notice "
                            f"can be rejected")
    row.status = NoticeStatus.REJECTED.value
    row.decided_by, row.decided_at, row.reason = person.id, utcnow(), reason.strip()
    db_session.flush()
    _timeline(db_session, row, "notice.rejected", f"{_label(row)} rejected by {person.name} ({person.id}, {via}): "
              f"{reason.strip()}", actor=person.id, flow_run_id=flow_run_id, via=via)
    return row


def mark_sent(*, db_session: Session, notice_id: str, by: str, sent_to: list[dict[str, Any]],
              flow_run_id: str | None = None) -> NoticeDraft:
    """Every recipient got it: the notice is sent; obligations it fulfils may now be met."""
    row = find_notice(db_session=db_session, ref=notice_id, lock=True)
    if row.status != NoticeStatus.APPROVED.value:
        raise NoticeRefused(f"notice {row.id} v{row.version} is {row.status}; only an approved notice is sent")
    row.status, row.sent_at, row.sent_to = NoticeStatus.SENT.value, utcnow(), list(sent_to)
    db_session.flush()
    names = ", ".join(str(s.get("to")) for s in sent_to)
    _timeline(db_session, row, "notice.sent", f"{_label(row)} sent to {names} (by {by})", actor=by,
              flow_run_id=flow_run_id, sent_to=sent_to)
    return row


def mark_to_file(*, db_session: Session, notice_id: str, by: str, to: str,
                 flow_run_id: str | None = None) -> tuple[NoticeDraft, bool]:
    """An approved notice for an authority LedgerGuard cannot reach: recorded once as 'approved —
    to be filed by hand'; returns (row, recorded now)."""
    row = find_notice(db_session=db_session, ref=notice_id, lock=True)
    if any(s.get("status") == "to_file" for s in row.sent_to or []):
        return row, False
    row.sent_to = [*(row.sent_to or []), {"to": to, "channel": "by_hand", "status": "to_file", "by": by,
                                          "at": utcnow().isoformat(timespec="seconds")}]
    db_session.flush()
    _timeline(db_session, row, "notice.to_file", f"{_label(row)} approved — to be filed by hand with {to}; "
              f"then `ledgerguard notices filed {row.id} --by <id> --ref <reference>`", actor=by,
              flow_run_id=flow_run_id)
    return row, True


def mark_filed(*, db_session: Session, notice_id: str, by: str, ref: str, policy: NoticePolicy, contacts,
               flow_run_id: str | None = None) -> NoticeDraft:
    """A person filed an approved by-hand notice (portal, hotline, visit) under reference ``ref``."""
    from ledgerguard.notices.models import Delivery

    if not (ref or "").strip():
        raise NoticeRefused("ref: give the filing's reference (portal receipt number, case number, who took it)")
    row = find_notice(db_session=db_session, ref=notice_id, lock=True)
    person = contacts.person((by or "").strip())
    if person is None:
        raise NoticeRefused(f"by: unknown person {by!r}: not in contacts.yaml")
    kind = policy.kind(row.kind)
    if kind.delivery != Delivery.BY_HAND:
        raise NoticeRefused(f"notice {row.id} is a {row.kind} notice, delivered by email: use `ledgerguard notices "
                            f"send {row.id}`")
    if row.status == NoticeStatus.SENT.value:
        raise NoticeRefused(f"notice {row.id} v{row.version} was already filed ({_filed_ref(row)})")
    if row.status != NoticeStatus.APPROVED.value:
        raise NoticeRefused(f"notice {row.id} v{row.version} is {row.status}; approve it before filing it")
    verify_file(row)  # what was filed is what was approved
    entry = {"to": kind.to.get(row.language), "channel": "by_hand", "status": "filed", "ref": ref.strip(),
             "by": person.id, "at": utcnow().isoformat(timespec="seconds")}
    row.status, row.sent_at = NoticeStatus.SENT.value, utcnow()
    row.sent_to = [*(row.sent_to or []), entry]
    db_session.flush()
    _timeline(db_session, row, "notice.filed", f"{_label(row)} filed with {entry['to']} by {person.name} "
              f"({person.id}), reference {ref.strip()}", actor=person.id, flow_run_id=flow_run_id, ref=ref.strip())
    return row


def _filed_ref(row: NoticeDraft) -> str:
    return next((f"reference {s['ref']}" for s in row.sent_to or [] if s.get("ref")), "no reference")


def fulfil_obligations(*, db_session: Session, row: NoticeDraft, policy: NoticePolicy,
                       flow_run_id: str | None = None) -> list[str]:
    """Mark the obligations this sent notice fulfils as met. A per-client notice meets its
    obligation only once every affected client's current notice has gone out."""
    kind = policy.kind(row.kind)
    if row.status != NoticeStatus.SENT.value or not kind.fulfils:
        return []
    if kind.per == "client":
        incident = register.get_incident(db_session=db_session, incident_id=row.incident_id)
        sent = {r.audience for r in list_notices(db_session=db_session, incident_id=row.incident_id, kind=row.kind)
                if r.status == NoticeStatus.SENT.value}
        if not set(map(str, incident.affected_clients or [])) <= sent:
            return []
    met = []
    for ob in register.list_obligations(db_session=db_session, incident_id=row.incident_id):
        if ob.obligation_id in kind.fulfils and ob.status != "met":
            register.set_obligation_status(db_session=db_session, incident_id=row.incident_id,
                                           obligation_id=ob.obligation_id, status="met")
            register.append_timeline(db_session=db_session, incident_id=row.incident_id, stage=Stage.RECORD.value,
                                     kind="obligation.met", actor=row.decided_by or "ledgerguard",
                                     flow_run_id=flow_run_id,
                                     message=f"{ob.obligation_id} met: {_label(row)} went out",
                                     data={"obligation_id": ob.obligation_id, "notice_id": row.id})
            met.append(ob.obligation_id)
    return met


def describe(row: NoticeDraft) -> dict[str, Any]:
    """One draft as plain data (CLI --json, the flow's result)."""
    return {"id": row.id, "incident_id": row.incident_id, "kind": row.kind, "audience": row.audience,
            "language": row.language, "version": row.version, "status": row.status,
            "content_sha256": row.content_sha256, "path": row.path,
            "drafted_at": row.drafted_at.isoformat(timespec="seconds") if row.drafted_at else None,
            "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat(timespec="seconds") if row.decided_at else None,
            "reason": row.reason, "sent_at": row.sent_at.isoformat(timespec="seconds") if row.sent_at else None,
            "sent_to": list(row.sent_to or [])}
