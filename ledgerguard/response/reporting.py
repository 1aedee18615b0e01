"""Record: read an incident back from the register and render its report and post-mortem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledgerguard.masking import mask_value


def _row(obj, names: list[str]) -> dict[str, Any]:
    return {name: getattr(obj, name, None) for name in names}


def incident_snapshot(*, runtime, incident_id: str) -> dict[str, Any]:
    """Everything the register knows about one incident, as plain data for templates."""
    from ledgerguard.acknowledgement.service import mtta_seconds
    from ledgerguard.approvals.service import list_approvals
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        mtta = mtta_seconds(incident)
        snapshot = {
            "incident": {**_row(incident, [
                "id", "dedup_key", "emergency_type", "resource", "title", "status", "drill", "level",
                "priority", "impact", "urgency", "regulatory_grade", "affected_clients", "opened_at",
                "acknowledged_at", "acknowledged_by", "acknowledged_via", "mitigated_at", "resolved_at",
                "closed_at", "timeline_count", "timeline_head"]),
                "mtta_minutes": round(mtta / 60, 1) if mtta is not None else None},
            "approvals": [_row(a, ["step_id", "status", "requested_by", "requested_at", "deadline", "decided_by",
                                   "decided_at", "reason", "via"])
                          for a in list_approvals(db_session=db_session, incident_id=incident_id)],
            "assessment": dict(incident.assessment or {}),
            "timeline": [_row(e, ["seq", "occurred_at", "stage", "kind", "actor", "message", "flow_run_id"])
                         for e in register.get_timeline(db_session=db_session, incident_id=incident_id)],
            "actions": [_row(a, ["step_id", "title", "kind", "status", "attempts", "started_at",
                                 "finished_at", "output", "error"])
                        for a in register.list_actions(db_session=db_session, incident_id=incident_id)],
            "notifications": [_row(n, ["stage", "recipient", "channel", "step", "template", "subject",
                                       "status", "attempts", "last_error", "sent_at"])
                              for n in register.list_notifications(db_session=db_session,
                                                                   incident_id=incident_id)],
            "obligations": [_row(o, ["obligation_id", "law", "action", "recipient", "deadline",
                                     "immediate", "status", "met_at", "note", "amount_yuan"])
                            for o in register.list_obligations(db_session=db_session,
                                                               incident_id=incident_id)],
            "findings": [_row(f, ["detector", "resource", "summary", "facts", "evidence", "observed_at"])
                         for f in register.list_findings(db_session=db_session, incident_id=incident_id)],
        }
    # Personal data can sit in evidence and facts; nothing leaves the register unmasked.
    return mask_value(snapshot)


RUN_DEFAULTS: dict[str, Any] = {
    "flow_run_id": None, "flow_run_name": None, "requested_by": "", "source": "", "drill": False,
    "resource": None, "clear_reasons": [], "steps": [], "notified": [], "notify_error": None,
}


def report_context(*, runtime, entry, snapshot: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    language = runtime.settings.language
    return {
        "language": language,
        "agency": {"name": _agency_name(runtime), "privacy_contacts": privacy_contacts(runtime)},
        "entry": {
            "id": entry.id,
            "name": entry.name.zh if language.startswith("zh") else entry.name.en,
            "flow": entry.flow,
            "rto_hours": entry.sla.rto_hours,
            "rpo_hours": entry.sla.rpo_hours,
        },
        "run": mask_value({**RUN_DEFAULTS, **run}),
        "ack": {},          # the recipient's acknowledgement link and the form's URL, when there are
        "escalation": {},   # which escalation round a notification belongs to
        **(snapshot or {"incident": None, "assessment": {}, "timeline": [], "actions": [], "approvals": [],
                        "notifications": [], "obligations": [], "findings": []}),
    }


def privacy_contacts(runtime) -> list[dict[str, str]]:
    """Who individuals and clients can contact about their personal data (PIPL Art. 57 (3))."""
    try:
        people = runtime.contacts.with_role("data_protection")
    except Exception:  # noqa: BLE001 — a notice draft must still be written when contacts.yaml is broken
        return []
    return [{"name": p.name, "email": p.email or ""} for p in people]


def needs_pipl57_notice(snapshot: dict[str, Any]) -> bool:
    """The incident carries a PIPL Art. 57 obligation (the agency's own, or via the client)."""
    return any(str(o.get("obligation_id") or "").startswith("pipl_57") for o in snapshot.get("obligations") or [])


def _agency_name(runtime) -> str:
    try:
        return runtime.agency.config.name
    except Exception:  # noqa: BLE001 — a report must still go out when the agency file is broken
        return ""


def pipl57_notice_path(reports_dir: Path, incident_id: str) -> Path:
    """Where the incident's PIPL Art. 57 notice draft is written (and read back by a drill)."""
    return Path(reports_dir) / incident_id / f"notice-pipl57-{incident_id}.md"


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
