"""Render an incident's notices and record each as a versioned draft in the register.

Prefect-free: the record stage (tasks/record.py) and `ledgerguard notices draft` call
:func:`draft_for_incident`. A draft is rendered from the incident snapshot (already masked) with the
report context the other messages use, plus the facts a notice states (``notice`` in the template
context). Its file is ``<reports>/<incident>/notices/<kind>-<audience>-v<n>.md``: one file per
version, so the text a person approved — or that went out — is never overwritten by a later one.
The PIPL Art. 57 draft is also kept at ``response.reporting.pipl57_notice_path`` (the latest
version, the path drills and reports read).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerguard.channels.messaging import format_dt, level_label, render_message
from ledgerguard.masking import mask_value
from ledgerguard.models import Stage, utcnow
from ledgerguard.notices import service as notices
from ledgerguard.notices.models import NeededNotice, NoticePolicy
from ledgerguard.register import service as register
from ledgerguard.response.reporting import pipl57_notice_path

__all__ = ["Drafted", "draft_for_incident", "load_runtime_policy", "notice_file", "notice_facts"]


@dataclass
class Drafted:
    id: str
    kind: str
    audience: str
    version: int
    status: str
    path: Path
    created: bool
    missing: list[str] = field(default_factory=list)


def load_runtime_policy(runtime) -> NoticePolicy:
    return notices.load_policy(Path(runtime.settings.catalog_dir) / notices.NOTICES_FILE)


def notice_file(reports_dir: Path, incident_id: str, kind: str, audience: str, version: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in audience)
    return Path(reports_dir) / incident_id / "notices" / f"{kind}-{safe}-v{version}.md"


# --------------------------------------------------------------------------- what a notice states


def _facts(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return [f.get("facts") or {} for f in snapshot.get("findings") or []]


def _numbers(facts: list[dict[str, Any]], name: str) -> list[float]:
    return [f[name] for f in facts if isinstance(f.get(name), (int, float)) and not isinstance(f.get(name), bool)]


def _join(items: list[str], language: str) -> str:
    return ("、" if language.startswith("zh") else ", ").join(items)


def notice_facts(*, runtime, policy: NoticePolicy, entry, snapshot: dict[str, Any], language: str,
                 reported_at=None) -> dict[str, Any]:
    """The facts every notice kind states, as text in ``language`` (the CAC report's fields and the
    police report's, the PI kinds and counts a client notice names). Nothing here changes between
    two renders of the same incident state, so an unchanged incident re-renders to the same bytes."""
    zh = language.lower().startswith("zh")

    def t(zh_text: str, en_text: str) -> str:
        return zh_text if zh else en_text

    tz = runtime.settings.timezone
    incident = snapshot.get("incident") or {}
    facts = _facts(snapshot)
    kinds = list(dict.fromkeys(k for f in facts for k in (f.get("pii_kinds") or []) if isinstance(k, str)))
    kind_labels = [policy.text("pi_kinds", k, language, k) for k in kinds]
    people = int(max(_numbers(facts, "pii_people_leaked") + _numbers(facts, "pii_people") + [0]))
    loss = max(_numbers(facts, "direct_loss_yuan") + [0])
    clients = [str(c) for c in incident.get("affected_clients") or []]
    entrusted = any(f.get("agency_role") in ("entrusted", "both") for f in facts)

    agency_name = _agency_name(runtime)
    # agency.yaml has no 统一社会信用代码 field today; read one if the agency config ever carries it.
    credit_code = getattr(_agency_config(runtime), "credit_code", None)
    unit = agency_name + (t(f"（统一社会信用代码 {credit_code}）", f" (unified social credit code {credit_code})")
                          if credit_code else t("（统一社会信用代码：agency.yaml 未登记，报送前补填）",
                                                " (unified social credit code: not in agency.yaml; add it before filing)"))
    resource = str(incident.get("resource") or "")
    prefix = resource.split(":", 1)[0]
    system = policy.text("systems", prefix, language, "")
    system = f"{system}（{resource}）" if system and zh else (f"{system} ({resource})" if system else resource)
    grade = str(incident.get("regulatory_grade") or "一般")
    grade_text = policy.text("grades", grade, language, grade)
    if incident.get("level"):
        grade_text += t(f"（内部分级：{level_label(incident['level'], language)}）",
                        f" (internal level: {level_label(incident['level'], language)})")

    impact = [t(f"受影响客户 {len(clients)} 家", f"{len(clients)} client(s) affected")]
    if people:
        impact.append(t(f"涉及个人约 {people} 人", f"personal information of about {people} people"))
    if kind_labels:
        impact.append(t("个人信息种类：", "kinds of personal information: ") + _join(kind_labels, language))
    if loss:
        impact.append(t(f"直接经济损失约 {loss:,.0f} 元", f"direct loss about ¥{loss:,.0f}"))
    done = [a["title"] for a in snapshot.get("actions") or [] if a.get("status") == "succeeded"]
    waiting = [a["title"] for a in snapshot.get("actions") or [] if a.get("status") in ("open", "pending", "waiting")]
    measures = _join(done, language) if done else t("正在处置", "response in progress")
    if waiting:
        measures += t("；进行中：", "; in progress: ") + _join(waiting, language)
    evidence = [f"{a['title']}" + (f"（{a['output']['manifest']}）" if zh else f" ({a['output']['manifest']})")
                for a in snapshot.get("actions") or []
                if a.get("status") == "succeeded" and isinstance(a.get("output"), dict) and a["output"].get("manifest")]
    n_findings = len(snapshot.get("findings") or [])
    evidence.append(t(f"{n_findings} 项检测发现及其证据已在事件登记簿留存（防篡改时间线）",
                      f"{n_findings} detection finding(s) and their evidence kept in the incident register "
                      f"(tamper-evident timeline)"))
    contact = _contact(runtime, language)
    summaries = list(dict.fromkeys(f.get("summary") or "" for f in snapshot.get("findings") or []))
    return {
        "reporting_unit": unit,
        "system": system or t("未确定", "not determined"),
        "discovered_at": format_dt(incident.get("opened_at"), tz=tz),
        "incident_type": f"{policy.text('categories', entry.category, language, entry.category)} — "
                         f"{entry.name.get(language)}",
        "grade": grade_text,
        "impact": ("；" if zh else "; ").join(impact),
        "measures": measures,
        "contact": contact,
        "reported_at": format_dt(reported_at or utcnow(), tz=tz)
                       + t("（草稿首次生成时间；以实际报送时间为准）", " (when first drafted; the filing time counts)"),
        "facts": ("；" if zh else "; ").join(s for s in summaries if s) or t("正在调查", "under investigation"),
        "evidence": ("；" if zh else "; ").join(evidence),
        "pi_kinds": kind_labels,
        "people": people,
        "clients_count": len(clients),
        "entrusted": entrusted,
    }


def _agency_config(runtime):
    try:
        return runtime.agency.config
    except Exception:  # noqa: BLE001 — a notice must still be drafted when the agency file is broken
        return None


def _agency_name(runtime) -> str:
    config = _agency_config(runtime)
    return getattr(config, "name", "") or ""


def _contact(runtime, language: str) -> str:
    """Whom the reader calls: the data-protection lead(s), else the owner."""
    try:
        people = runtime.contacts.with_role("data_protection") or runtime.contacts.with_role("owner")
    except Exception:  # noqa: BLE001 — a broken contacts.yaml must not stop a notice draft
        people = []
    if not people:
        return "个人信息保护负责人（见合同）" if language.startswith("zh") else "the data-protection lead (see the contract)"
    return _join([f"{p.name}（{p.email}）" if p.email else p.name for p in people], language) \
        if language.startswith("zh") else ", ".join(f"{p.name} ({p.email})" if p.email else p.name for p in people)


def _client(runtime, client_id: str) -> dict[str, Any]:
    try:
        client = runtime.agency.client(client_id)
    except Exception:  # noqa: BLE001 — an unknown client is still addressed by its id
        return {"id": client_id, "name": client_id, "legal_rep": "", "accountant": "", "accountant_email": ""}
    person = runtime.contacts.person(str(client.accountant_id))
    return {"id": client_id, "name": client.name, "legal_rep": client.legal_rep,
            "accountant": person.name if person else str(client.accountant_id),
            "accountant_email": (person.email or "") if person else ""}


# --------------------------------------------------------------------------- drafting


def draft_for_incident(*, runtime, entry, snapshot: dict[str, Any], context: dict[str, Any],
                       needed: list[NeededNotice] | None = None, policy: NoticePolicy | None = None,
                       flow_run_id: str | None = None, drafted_by: str = "ledgerguard",
                       restore: bool = False) -> list[Drafted]:
    """Render and record each notice the incident needs (or ``needed``); returns every one with
    whether it is a new version. One ``notice.drafted`` timeline entry lists the new versions of
    this pass. ``restore`` (a person re-drafting) rewrites a draft file that no longer matches its
    recorded hash; the record stage only rewrites a missing one and never touches a changed file
    silently — approval refuses it, naming the file."""
    policy = policy or load_runtime_policy(runtime)
    incident = snapshot["incident"]
    incident_id = incident["id"]
    if needed is None:
        needed = notices.needed_notices(policy=policy, entry=entry, incident=incident,
                                        obligations=snapshot.get("obligations") or [])
    if not needed:
        return []
    language = runtime.settings.language
    reports_dir = Path(runtime.settings.reports_dir)
    out: list[Drafted] = []
    with runtime.session() as db_session:
        for item in needed:
            spec = policy.kind(item.kind)
            reported_at = notices.first_drafted_at(db_session=db_session, incident_id=incident_id, kind=item.kind,
                                                   audience=item.audience)
            stated = notice_facts(runtime=runtime, policy=policy, entry=entry, snapshot=snapshot, language=language,
                                  reported_at=reported_at)
            notice_ctx = mask_value({
                "kind": item.kind, "audience": item.audience, "because": item.because,
                "name": spec.name.get(language), "to": spec.to.get(language),
                "client": _client(runtime, item.audience) if spec.per == "client" else None,
                "delivery": spec.delivery.value, **stated})
            message = render_message(name=item.template, language=language, context={**context, "notice": notice_ctx},
                                     templates_dir=runtime.settings.templates_dir)
            text = (message.markdown or message.text).rstrip("\n") + "\n"
            sha = notices.content_sha256(text)
            row, created = notices.record_draft(
                db_session=db_session, incident_id=incident_id, kind=item.kind, audience=item.audience,
                language=language, sha256=sha, flow_run_id=flow_run_id, drafted_by=drafted_by,
                path_for=lambda v, k=item.kind, a=item.audience: notice_file(reports_dir, incident_id, k, a, v))
            path = Path(row.path)
            if created or not path.exists():
                _write(path, text)
            elif restore and hashlib.sha256(path.read_bytes()).hexdigest() != row.content_sha256:
                # Unchanged content, so ``text`` is exactly the recorded version: put it back.
                _write(path, text)
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value,
                    kind="notice.restored", actor=drafted_by, flow_run_id=flow_run_id,
                    message=f"{item.kind} notice v{row.version}: {path.name} was changed on disk; restored to "
                            f"the drafted text", data={"notice_id": row.id, "path": str(path)})
            if item.kind == "pipl57" and row.content_sha256 == sha:
                # The latest PIPL Art. 57 draft at its well-known path (drill scoring, the report's attachment).
                legacy = pipl57_notice_path(reports_dir, incident_id)
                if not legacy.exists() or legacy.read_bytes() != text.encode("utf-8"):
                    _write(legacy, text)
            missing = notices.missing_contents(kind=spec, language=language, text=text) if created else []
            out.append(Drafted(id=row.id, kind=row.kind, audience=row.audience, version=row.version,
                               status=row.status, path=path, created=created, missing=missing))
        new = [d for d in out if d.created]
        if new:
            lines = [f"{d.kind}{'' if d.audience == d.kind else ' ' + d.audience} v{d.version} ({d.path.name})"
                     + (f" — missing: {', '.join(d.missing)}" if d.missing else "") for d in new]
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value, kind="notice.drafted",
                actor=drafted_by, flow_run_id=flow_run_id,
                message=f"{len(new)} notice draft(s): " + "; ".join(lines) + "; each waits for a person's approval "
                        f"(`ledgerguard notices list --incident {incident_id}`)",
                data={"notices": [{"id": d.id, "kind": d.kind, "audience": d.audience, "version": d.version,
                                   "path": str(d.path), "missing": d.missing} for d in new]})
    return out


def _write(path: Path, text: str) -> None:
    # Bytes, not text mode: the hash in the register is of exactly these bytes.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
