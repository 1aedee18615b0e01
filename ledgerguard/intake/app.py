"""The intake HTTP app (Starlette): alerts in, register rows and outbox events out.

    from ledgerguard.intake.app import create_app
    app = create_app()                      # uvicorn.run(app, host="127.0.0.1", port=8600)

Endpoints (POST JSON unless said):

    /api/v1/alertmanager     Prometheus Alertmanager webhook (version 4), one signal per alert
    /api/v1/grafana          Grafana unified alerting webhook
    /api/v1/signals          LedgerGuard's generic signal
    /v2/enqueue              PagerDuty Events API v2 (trigger / acknowledge / resolve), PagerDuty's answers
    /v2/change/enqueue       PagerDuty change events
    GET /api/v1/signals/{id} one stored signal and its outbox events (authenticated)
    /api/v1/incidents/{id}/ack  acknowledge an incident as a person of contacts.yaml (scope ``ack``)
    GET|POST /ack/{token}    one-click acknowledgement link: GET shows the page (spends nothing),
                             POST spends the link and acknowledges; the signed token is the credential
    GET /healthz             register reachability, schema revision and outbox counts

Every accepted request is written to the register in ONE transaction — the ``intake_requests``
row, its signals, the incident status changes and one outbox row per event — before the 202 is
sent. If that write fails (locked after retries, read-only, disk full, unreachable) the answer
is 503 with ``Retry-After``: never a 202 the intake cannot keep. The intake does not talk to
Prefect: a relay delivers the outbox (see ``ledgerguard.signals`` for the event shape). The one
exception is best effort, after an acknowledgement is committed: a background task asks Prefect
(when it is reachable) to close the incident's waiting escalation runs; if it cannot, the next
escalation round reads the acknowledgement in the register and stops by itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route as HttpRoute

from ledgerguard.acknowledgement.links import LinkRefused, link_key, peek_link, redeem_link
from ledgerguard.acknowledgement.service import AckResult, UnknownPerson, acknowledge, check_person, mtta_seconds
from ledgerguard.agency.models import AgencyDataError
from ledgerguard.channels.contacts import ContactsError
from ledgerguard.config import Settings, get_settings
from ledgerguard.intake.auth import AuthError, Authenticated, CredentialStore
from ledgerguard.intake.documents import DOCUMENT_ENDPOINTS, DocumentRejected
from ledgerguard.intake.models import AckRequest, IntakeSettings, RawSignal
from ledgerguard.intake.parsers import (
    parse_alertmanager,
    parse_generic,
    parse_grafana,
    parse_pagerduty_change,
    parse_pagerduty_event,
)
from ledgerguard.intake.routing import Routed, Router, Unrouted, default_summary, load_routes
from ledgerguard.models import Signal
from ledgerguard.register import service
from ledgerguard.register.db import current_revision, head_revision, make_engine, session_scope, upgrade
from ledgerguard.register.models import AckLink, Incident, OutboxItem, SignalRecord
from ledgerguard.signals import RequestError, request_for_signal

logger = logging.getLogger("ledgerguard.intake")

MESSAGES = {
    "zh-CN": {
        "accepted": "已接收并写入登记簿",
        "unauthorized": "身份验证失败",
        "forbidden": "该凭据无权使用此接口",
        "invalid": "请求内容无效",
        "malformed": "请求体不是有效的 JSON",
        "too_large": "请求体过大",
        "unavailable": "登记簿暂时无法写入，请稍后重试",
        "not_found": "未找到该信号",
        "unrouted": "没有匹配的路由：已记录为未路由信号，请人工处理",
        "conflict": "该编号已被另一份文件使用",
        "agency_data": "代理记账公司的数据文件有误，无法保存该文件",
        "acknowledged": "已确认接手",
        "acknowledged_again": "该事件此前已被确认接手；本次确认已记入时间线",
        "incident_not_found": "登记簿中没有该事件",
        "incident_closed": "该事件已结束（已恢复或已关闭），不能再确认接手",
        "contacts": "联系人文件 contacts.yaml 有误，无法核对确认人",
    },
    "en": {
        "accepted": "accepted and written to the register",
        "unauthorized": "authentication failed",
        "forbidden": "this credential may not use this endpoint",
        "invalid": "the request is invalid",
        "malformed": "the body is not valid JSON",
        "too_large": "the body is too large",
        "unavailable": "the register cannot be written right now; retry later",
        "not_found": "no such signal",
        "unrouted": "no route matched: recorded as unrouted for a person to look at",
        "conflict": "this id is already used by another document",
        "agency_data": "the agency's data files are broken; the document cannot be stored",
        "acknowledged": "acknowledged",
        "acknowledged_again": "the incident was already acknowledged; this acknowledgement is kept on the timeline",
        "incident_not_found": "no such incident in the register",
        "incident_closed": "the incident is over (resolved or closed); it cannot be acknowledged",
        "contacts": "contacts.yaml is broken; the person cannot be checked",
    },
}


class TooLarge(Exception):
    pass


class Malformed(Exception):
    pass


class Replay(Exception):
    pass


class RegisterUnavailable(Exception):
    pass


class IncidentClosed(Exception):
    """The incident is resolved or closed: nobody can take it over any more."""

    def __init__(self, incident_id: str, status: str) -> None:
        super().__init__(f"incident {incident_id} is {status}")
        self.incident_id = incident_id
        self.status = status


# --- stopping the escalation (best effort, after the register commit) ------------------------------

ESCALATION_STOP_SECONDS = 10.0
"""Overall bound of the best-effort call to Prefect after an acknowledgement."""


@dataclass(frozen=True)
class EscalationStop:
    """What the best-effort call to Prefect did: ``stopped`` with the runs it ``ended``, or why not."""

    stopped: bool
    ended: tuple[str, ...] = ()
    reason: str = ""


def prefect_api_url(home: Path | None = None) -> str | None:
    """Where Prefect's API is, without importing Prefect: ``PREFECT_API_URL``, else the Prefect
    server that `ledgerguard up` started for this home (``<home>/stack.json``); None when neither."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if url:
        return url.rstrip("/")
    if home is not None:
        try:
            from ledgerguard.stack import read_state

            state = read_state(Path(home)) or {}
        except (OSError, ValueError):
            state = {}
        url = ((state.get("components") or {}).get("prefect") or {}).get("api_url")
        if url:
            return str(url).rstrip("/")
    return None


def stop_escalation_best_effort(*, incident_id: str, message: str, api_url: str | None,
                                timeout_seconds: float = ESCALATION_STOP_SECONDS) -> EscalationStop:
    """Close the incident's open escalation form and cancel its next round in Prefect
    (``tasks.people.stop_escalation``), within ``timeout_seconds`` overall. Never raises: when
    Prefect is not configured, down or slow, the next escalation round sees the acknowledgement
    in the register and stops by itself."""
    if not api_url:
        return EscalationStop(False, reason="no Prefect API (PREFECT_API_URL unset, no `ledgerguard up` here)")
    try:
        from ledgerguard.embedded import server_is_healthy

        deadline = time.monotonic() + timeout_seconds
        if not server_is_healthy(api_url, timeout=min(2.0, timeout_seconds)):
            return EscalationStop(False, reason=f"Prefect API {api_url} is not reachable")
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                from prefect.settings import PREFECT_API_URL, temporary_settings

                from tasks.people import stop_escalation

                with temporary_settings(updates={PREFECT_API_URL: api_url}):
                    outcome["ended"] = stop_escalation(incident_id=incident_id, message=message)
            except Exception as exc:  # noqa: BLE001 — best effort: reported, never raised
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        # Prefect's client retries for a long time on its own; a daemon thread keeps our bound.
        thread = threading.Thread(target=work, name=f"ledgerguard-stop-escalation-{incident_id[:8]}", daemon=True)
        thread.start()
        thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            return EscalationStop(False, reason=f"Prefect did not answer within {timeout_seconds:g} s")
        if "error" in outcome:
            return EscalationStop(False, reason=str(outcome["error"])[:500])
        return EscalationStop(True, ended=tuple(outcome.get("ended") or ()))
    except Exception as exc:  # noqa: BLE001
        return EscalationStop(False, reason=f"{type(exc).__name__}: {exc}"[:500])


def _locked_open_incident(db_session: Any, incident_id: str) -> Incident:
    """The incident, row-locked for the acknowledgement; NotFound / IncidentClosed otherwise."""
    incident = db_session.scalars(select(Incident).where(Incident.id == incident_id).with_for_update()).first()
    if incident is None:
        raise service.NotFound(f"incident {incident_id!r} not found in the register")
    if not incident.is_open:
        raise IncidentClosed(incident.id, incident.status)
    return incident


# --- the acknowledgement page --------------------------------------------------------------------

ACK_PAGE = "ack_page.html.j2"
MAX_TOKEN_LENGTH = 200
_LINK_REFUSED_STATUS = {"unknown": 404, "forged": 404, "used": 410, "expired": 410, "closed": 410}


@dataclass(frozen=True)
class AckPage:
    status_code: int
    context: dict[str, Any]
    stop: tuple[str, str] | None = None  # (incident id, message) for the escalation stop


def _incident_view(incident: Incident) -> dict[str, Any]:
    seconds = mtta_seconds(incident)
    return {"id": incident.id, "title": incident.title or incident.emergency_type, "level": incident.level,
            "status": incident.status, "emergency_type": incident.emergency_type, "drill": incident.drill,
            "opened_at": incident.opened_at, "acknowledged_at": incident.acknowledged_at,
            "acknowledged_by": incident.acknowledged_by, "acknowledged_via": incident.acknowledged_via,
            "mtta_minutes": round(seconds / 60, 1) if seconds is not None else None}


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(body)"
        out.append({"field": loc, "reason": e["msg"]})
    return out


def _pd_error(e: dict[str, str]) -> str:
    """PagerDuty's wording: "'payload.summary' is missing or blank"."""
    reason = "is missing or blank" if e["reason"] == "Field required" else e["reason"]
    return f"'{e['field']}' {reason}"


def _retryable(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


class Intake:
    """The intake's state: settings, credentials, routes and the register engine."""

    def __init__(self, *, settings: Settings, intake: IntakeSettings, engine: Engine | None,
                 router: Router | None = None, credentials: CredentialStore | None = None) -> None:
        self.settings = settings
        self.intake = intake
        self.engine = engine or make_engine(settings.register, timeout=intake.db_timeout_seconds)
        self.router = router or load_routes(intake.routes)
        self.credentials = credentials or CredentialStore(
            path=intake.credentials_file or settings.home / "intake-credentials.yaml", env_tokens=intake.tokens)
        self.language = "en" if settings.language == "en" else "zh-CN"
        self._ready = False
        self._ready_lock = threading.Lock()
        self._types: set[str] | None = None
        self._contacts: tuple[tuple[int, int] | None, Any] | None = None
        self._contacts_lock = threading.Lock()
        self._pages: Any = None

    def text(self, key: str) -> str:
        return MESSAGES[self.language][key]

    # --- register ------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                try:
                    # Already at head (the usual case): a read, so a probe never queues for the
                    # write lock behind a long register transaction of another process.
                    if current_revision(self.engine) != head_revision():
                        upgrade(self.engine)
                except SQLAlchemyError as exc:
                    raise RegisterUnavailable(f"cannot migrate the register: {type(exc).__name__}: {exc}") from None
                self._ready = True

    def known_types(self) -> set[str] | None:
        if self._types is None:
            try:
                from ledgerguard.catalog.service import load_catalog

                self._types = {entry.id for entry in load_catalog(self.settings.catalog_dir)}
            except Exception:  # noqa: BLE001 — a broken catalog must not stop the intake
                logger.exception("catalog not loaded; generic emergency types are not checked")
                self._types = set()
        return self._types or None

    def transact(self, work: Callable[[Any], Any], *, signature: str | None = None) -> Any:
        """Run ``work(db_session)`` in one transaction, retrying a locked database; map failures
        to :class:`Replay` (a signature recorded before) or :class:`RegisterUnavailable`."""
        self.ensure_ready()
        last: Exception | None = None
        for attempt in range(self.intake.db_attempts):
            try:
                with session_scope(self.engine) as db_session:
                    if signature and service.signature_seen(db_session=db_session, signature=signature):
                        raise Replay()
                    return work(db_session)
            except (Replay, RegisterUnavailable):
                raise
            except IntegrityError as exc:
                if signature and self._signature_seen(signature):
                    raise Replay() from None
                raise RegisterUnavailable(f"register write refused: {exc.orig}") from None
            except OperationalError as exc:
                last = exc
                if _retryable(exc) and attempt + 1 < self.intake.db_attempts:
                    time.sleep(min(1.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                    continue
                break
            except SQLAlchemyError as exc:
                last = exc
                break
            except OSError as exc:  # disk full and friends surface as OSError from some drivers
                last = exc
                break
        raise RegisterUnavailable(f"{type(last).__name__}: {getattr(last, 'orig', None) or last}")

    def _signature_seen(self, signature: str) -> bool:
        try:
            with session_scope(self.engine, read_only=True) as db_session:
                return service.signature_seen(db_session=db_session, signature=signature)
        except SQLAlchemyError:
            return False

    def record_rejection(self, *, source: str, auth: Authenticated, body: bytes, remote: str | None,
                         http_status: int, error: str) -> None:
        """Keep a rejected, authenticated request (best effort: the 4xx is the answer either way)."""
        def work(db_session: Any) -> None:
            service.record_intake_request(
                db_session=db_session, source=source, token_id=auth.credential.name,
                body_sha256=hashlib.sha256(body).hexdigest(), status="rejected", http_status=http_status,
                remote_addr=remote, error=error[:4000], signature=auth.signature)
        try:
            self.transact(work, signature=auth.signature)
        except (Replay, RegisterUnavailable) as exc:
            logger.warning("rejected %s request from %s not recorded: %s", source, auth.credential.name, exc)

    # --- acknowledging ---------------------------------------------------------------------

    def contacts(self) -> Any:
        """The agency's contacts.yaml (re-read when it changes); ContactsError when it is broken."""
        from ledgerguard.channels.contacts import load_contacts

        path = self.settings.contacts_path
        try:
            st = os.stat(path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._contacts_lock:
            if self._contacts is not None and stamp is not None and self._contacts[0] == stamp:
                return self._contacts[1]
            contacts = load_contacts(path)
            self._contacts = (stamp, contacts)
            return contacts

    def person_view(self, person_id: str) -> dict[str, str]:
        try:
            person = self.contacts().person(person_id)
        except ContactsError:
            person = None
        return {"id": person_id, "name": person.name if person is not None else person_id}

    def acknowledge_api(self, *, auth: Authenticated, body: bytes, remote: str | None, incident_id: str,
                        by: str, note: str) -> tuple[str, AckResult, float | None]:
        """Acknowledge ``incident_id`` as ``by`` via api, recording the request and the credential
        (on the timeline, in the note) in one transaction."""
        credential = auth.credential.name
        recorded = f"{note} [intake credential: {credential}]" if note else f"intake credential: {credential}"

        def work(db_session: Any) -> tuple[str, AckResult, float | None]:
            incident = _locked_open_incident(db_session, incident_id)
            result = acknowledge(db_session=db_session, incident_id=incident.id, by=by, via="api", note=recorded)
            row = service.record_intake_request(
                db_session=db_session, source="ack", token_id=credential, body_sha256=hashlib.sha256(body).hexdigest(),
                status="accepted", http_status=200, remote_addr=remote, signature=auth.signature)
            return row.id, result, mtta_seconds(incident)

        return self.transact(work, signature=auth.signature)

    def link_page(self, *, token: str, redeem: bool, remote: str | None) -> AckPage:
        """GET (``redeem=False``): the confirmation page, spending nothing. POST: spend the link
        and acknowledge via link. A refused link is a page too (404/410); never an exception."""
        token = (token or "")[:MAX_TOKEN_LENGTH]
        try:
            key = link_key(self.settings)
            if redeem:
                def work(db_session: Any) -> AckPage:
                    redeemed = redeem_link(db_session=db_session, key=key, token=token, remote=remote)
                    result = acknowledge(db_session=db_session, incident_id=redeemed.incident_id,
                                         by=redeemed.person_id, via="link")
                    incident = service.get_incident(db_session=db_session, incident_id=redeemed.incident_id)
                    return AckPage(200, {"state": "done", "incident": _incident_view(incident),
                                         "person": self.person_view(redeemed.person_id),
                                         "first": result.first},
                                   stop=(incident.id, f"acknowledged by {redeemed.person_id} via link"))

                return self.transact(work)
            self.ensure_ready()
            with session_scope(self.engine, read_only=True) as db_session:
                row = peek_link(db_session=db_session, key=key, token=token)
                incident = db_session.get(Incident, row.incident_id)
                if incident is None or not incident.is_open:
                    raise LinkRefused("closed", f"incident {row.incident_id} is no longer open")
                return AckPage(200, {"state": "confirm", "incident": _incident_view(incident),
                                     "person": self.person_view(row.person_id), "expires_at": row.expires_at})
        except LinkRefused as exc:
            logger.info("acknowledgement link refused (%s) from %s: %s", exc.reason, remote or "?", exc)
            return self._refused_page(token, exc)
        except (RegisterUnavailable, SQLAlchemyError, OSError) as exc:
            logger.error("acknowledgement link: register unavailable: %s", exc)
            return AckPage(503, {"state": "unavailable", "detail": ""})
        except Exception:  # noqa: BLE001 — a person clicked a link: answer with a page, never a 500
            logger.exception("acknowledgement link failed")
            return AckPage(503, {"state": "unavailable", "detail": ""})

    def _refused_page(self, token: str, exc: LinkRefused) -> AckPage:
        context: dict[str, Any] = {"state": "refused", "reason": exc.reason, "detail": str(exc), "incident": None}
        if exc.reason in ("used", "expired", "closed"):
            # The signature was verified for these: saying how the incident stands reveals nothing.
            try:
                with session_scope(self.engine, read_only=True) as db_session:
                    row = db_session.get(AckLink, token.partition(".")[0])
                    incident = db_session.get(Incident, row.incident_id) if row is not None else None
                    if incident is not None:
                        context["incident"] = _incident_view(incident)
            except SQLAlchemyError:
                pass
        return AckPage(_LINK_REFUSED_STATUS.get(exc.reason, 404), context)

    def render_page(self, context: dict[str, Any], *, nonce: str) -> str:
        try:
            if self._pages is None:
                self._pages = _page_environment(self.settings, self.language)
            return self._pages.get_template(ACK_PAGE).render(**context, nonce=nonce, language=self.language)
        except Exception:  # noqa: BLE001 — a broken template still answers with a page
            logger.exception("acknowledgement page template failed")
            from markupsafe import escape

            return (f"<!doctype html><html><body><h1>LedgerGuard</h1><p>{escape(context.get('state'))}</p>"
                    f"<p>{escape(context.get('detail') or '')}</p></body></html>")

    def stop_escalation(self, *, incident_id: str, message: str) -> None:
        """Background task after an acknowledgement: best effort, bounded, logged, never raised."""
        try:
            outcome = stop_escalation_best_effort(incident_id=incident_id, message=message,
                                                  api_url=prefect_api_url(self.settings.home))
        except Exception:  # noqa: BLE001
            logger.exception("stopping the escalation of %s failed", incident_id)
            return
        if outcome.stopped:
            logger.info("escalation of %s stopped: %d waiting run(s) ended", incident_id, len(outcome.ended))
        else:
            logger.info("escalation of %s not stopped in Prefect (%s); it stops at its next round",
                        incident_id, outcome.reason)

    # --- accepting -----------------------------------------------------------------------

    def _destinations(self, db_session: Any, raw: RawSignal) -> list[Routed | Unrouted]:
        if raw.action in ("resolve", "acknowledge") and raw.dedup_key:
            # PagerDuty acknowledge/resolve carry only the dedup key: follow the signal that opened it.
            prior = db_session.scalars(
                select(SignalRecord).where(SignalRecord.dedup_key == raw.dedup_key,
                                           SignalRecord.status != "unrouted")
                .order_by(SignalRecord.received_at.desc()).limit(1)).first()
            if prior is not None:
                return [Routed(route=None, emergency_type=prior.emergency_type, resource=prior.resource,
                               summary=default_summary(raw) or prior.summary, group_key=None,
                               settings=self.router.defaults)]
        destinations = self.router.route(raw)
        if raw.action == "change":
            # Change events are kept for the timelines; one that matches no route is still a change.
            source = raw.labels.get("source") or "unknown"
            destinations = [d if isinstance(d, Routed) else Routed(
                route=None, emergency_type="change", resource=f"change:{source}"[:255].replace(" ", "_"),
                summary=default_summary(raw), group_key=None, settings=self.router.defaults)
                for d in destinations]
        return destinations

    def accept(self, *, source: str, auth: Authenticated, body: bytes, remote: str | None,
               raws: list[RawSignal]) -> tuple[str, list[dict[str, Any]], list[str]]:
        actor = auth.credential.name

        def work(db_session: Any) -> tuple[str, list[dict[str, Any]], list[str]]:
            request_row = service.record_intake_request(
                db_session=db_session, source=source, token_id=actor, body_sha256=hashlib.sha256(body).hexdigest(),
                status="accepted", http_status=202, remote_addr=remote, signature=auth.signature)
            results: list[dict[str, Any]] = []
            warnings: list[str] = []
            for raw in raws:
                for dest in self._destinations(db_session, raw):
                    outcome = self._accept_one(db_session, raw, dest, actor=actor, request_id=request_row.id)
                    if outcome.note and outcome.status == "unrouted":
                        warnings.append(outcome.note)
                    results.append(outcome.as_dict())
            request_row.signal_ids = [r["id"] for r in results]
            db_session.flush()
            return request_row.id, results, warnings

        return self.transact(work, signature=auth.signature)

    def _accept_one(self, db_session: Any, raw: RawSignal, dest: Routed | Unrouted, *, actor: str,
                    request_id: str) -> service.AcceptedSignal:
        payload = {"requested_by": actor, "intake_request_id": request_id, "annotations": raw.annotations,
                   "details": raw.details}
        observed = {"observed_at": raw.observed_at} if raw.observed_at else {}
        if isinstance(dest, Unrouted):
            signal = Signal(source=raw.source, emergency_type="unrouted", resource=raw.resource or "unrouted",
                            labels=raw.labels, dedup_key=raw.dedup_key or f"unrouted:{raw.fingerprint or 'none'}",
                            drill=raw.drill, summary=default_summary(raw),
                            payload={**payload, "reason": dest.reason}, **observed)
            return service.accept_signal(db_session=db_session, signal=signal, action=raw.action, actor=actor,
                                         fingerprint=raw.fingerprint, routed=False,
                                         note=f"{self.text('unrouted')} ({dest.reason})")
        signal = Signal(source=raw.source, emergency_type=dest.emergency_type, resource=dest.resource,
                        labels=raw.labels, dedup_key=raw.dedup_key or "", drill=raw.drill, summary=dest.summary,
                        payload={**payload, "route": dest.route}, **observed)
        request: Any = None
        if raw.action in ("firing", "resolve"):
            try:
                request = request_for_signal(signal, requested_by=actor)
            except RequestError as exc:
                if raw.action == "firing":
                    bad = signal.model_copy(update={"payload": {**signal.payload, "reason": str(exc)}})
                    return service.accept_signal(db_session=db_session, signal=bad, action=raw.action, actor=actor,
                                                 fingerprint=raw.fingerprint, routed=False,
                                                 note=f"{self.text('unrouted')} ({exc})")
        s = dest.settings
        return service.accept_signal(
            db_session=db_session, signal=signal, action=raw.action, actor=actor, fingerprint=raw.fingerprint,
            group_key=dest.group_key, fixed_dedup_key=bool(raw.dedup_key),
            group_window_seconds=s.group_window_seconds, group_wait_seconds=s.group_wait_seconds,
            flap_threshold=s.flap_threshold, flap_window_seconds=s.flap_window_seconds, request=request)


# --- HTTP -------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Malformed(f"body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise Malformed(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def create_app(*, settings: Settings | None = None, engine: Engine | None = None,
               intake: IntakeSettings | None = None, router: Router | None = None) -> Starlette:
    """The intake ASGI app. ``settings`` default to ``get_settings()`` (home, register URL,
    language), ``intake`` to ``IntakeSettings()`` (LEDGERGUARD_INTAKE_*); ``engine`` defaults to a
    new engine on the settings' register, migrated on first use."""
    state = Intake(settings=settings or get_settings(), intake=intake or IntakeSettings(), engine=engine,
                   router=router)
    limit = state.intake.max_body_bytes

    def error(status: int, key: str, **extra: Any) -> JSONResponse:
        headers = {"Retry-After": str(state.intake.retry_after_seconds)} if status == 503 else None
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="ledgerguard-intake"'}
        return JSONResponse({"error": key, "message": state.text(key), **extra}, status_code=status,
                            headers=headers)

    def authenticate(request: Request, body: bytes) -> Authenticated:
        return state.credentials.authenticate(headers={k.lower(): v for k, v in request.headers.items()},
                                              body=body, tolerance_seconds=state.intake.signature_tolerance_seconds)

    async def authenticated_body(request: Request) -> tuple[bytes, Authenticated] | JSONResponse:
        """The body within its limit and who sent it, or the 413 / 401 to answer."""
        try:
            body = await _read_body(request, limit)
        except TooLarge:
            return error(413, "too_large", limit_bytes=limit)
        try:
            return body, authenticate(request, body)
        except AuthError as exc:
            return error(401, "unauthorized", reason=exc.reason, detail=exc.detail)

    def store_document(store: Callable[[Any, Any], None], data: Any) -> None:
        from ledgerguard.agency import load_agency

        store(data, load_agency(state.settings.agency_path))

    def make_handler(source: str, parse: Callable[[Any], list[RawSignal] | RawSignal],
                     store: Callable[[Any, Any], None] | None = None):
        async def handler(request: Request) -> JSONResponse:
            received = await authenticated_body(request)
            if isinstance(received, JSONResponse):
                return received
            body, auth = received
            remote = _remote(request)

            async def reject(status: int, key: str, errors: list[dict[str, str]]) -> JSONResponse:
                summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
                await run_in_threadpool(state.record_rejection, source=source, auth=auth, body=body,
                                        remote=remote, http_status=status, error=f"{key}: {summary}")
                return error(status, key, errors=errors, detail=summary)

            if not auth.credential.allows(source):
                return await reject(403, "forbidden", [{"field": "(credential)", "reason":
                                    f"credential {auth.credential.name!r} may use "
                                    f"{', '.join(auth.credential.sources)}, not {source}"}])
            try:
                data = _json(body)
            except Malformed as exc:
                return await reject(400, "malformed", [{"field": "(body)", "reason": str(exc)}])
            try:
                parsed = parse(data)
            except ValidationError as exc:
                return await reject(422, "invalid", _field_errors(exc))
            raws = parsed if isinstance(parsed, list) else [parsed]
            if store is not None:
                # The document goes where the detectors read it before its signal is accepted.
                try:
                    await run_in_threadpool(store_document, store, data)
                except DocumentRejected as exc:
                    key = "conflict" if exc.status == 409 else "invalid"
                    return await reject(exc.status, key, [{"field": exc.field, "reason": exc.reason}])
                except (AgencyDataError, OSError) as exc:
                    logger.error("intake %s: cannot store the document: %s", source, exc)
                    return error(500, "agency_data", detail=str(exc)[:500])
            known = state.known_types()
            for raw in raws:
                if raw.emergency_type and known and raw.emergency_type not in known:
                    return await reject(422, "invalid", [{"field": "emergency_type", "reason":
                                        f"unknown emergency type {raw.emergency_type!r}"}])
            try:
                request_id, results, warnings = await run_in_threadpool(
                    state.accept, source=source, auth=auth, body=body, remote=remote, raws=raws)
            except Replay:
                return error(401, "unauthorized", reason="replayed_signature",
                             detail="this signature was already used; sign every request anew")
            except RegisterUnavailable as exc:
                logger.error("intake %s: register unavailable: %s", source, exc)
                return error(503, "unavailable", detail=str(exc)[:500])
            body_out: dict[str, Any] = {"status": "accepted", "message": state.text("accepted"),
                                        "request_id": request_id, "signals": results}
            if warnings:
                body_out["warnings"] = warnings
            return JSONResponse(body_out, status_code=202)

        return handler

    # --- PagerDuty --------------------------------------------------------------------------

    def pd_invalid(errors: list[str], status: int = 400) -> JSONResponse:
        return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                            status_code=status)

    def make_pd_handler(change: bool):
        async def handler(request: Request) -> JSONResponse:
            try:
                body = await _read_body(request, limit)
            except TooLarge:
                return JSONResponse({"status": "invalid event", "message": "Request entity too large",
                                     "errors": [f"body is larger than {limit} bytes"]}, status_code=413)
            try:
                data = _json(body)
            except Malformed as exc:
                return pd_invalid([f"Malformed JSON: {exc}"])
            if not isinstance(data, dict):
                return pd_invalid(["Event must be a JSON object"])
            routing_key = data.get("routing_key")
            if not isinstance(routing_key, str) or not routing_key.strip():
                return pd_invalid(["'routing_key' is missing or blank"])
            try:
                auth = state.credentials.by_routing_key(routing_key.strip())
            except AuthError as exc:
                return JSONResponse({"status": "unauthorized", "message": "Invalid routing key",
                                     "errors": [exc.detail], "reason": exc.reason}, status_code=401)
            remote = _remote(request)

            async def reject(status: int, errors: list[str], message: str = "Event object is invalid"):
                await run_in_threadpool(state.record_rejection, source="pagerduty", auth=auth, body=body,
                                        remote=remote, http_status=status, error="; ".join(errors))
                return JSONResponse({"status": "invalid event" if status == 400 else "forbidden",
                                     "message": message, "errors": errors}, status_code=status)

            if not auth.credential.allows("pagerduty"):
                return await reject(403, [f"credential {auth.credential.name!r} may not use the PagerDuty API"],
                                    "Forbidden")
            try:
                if change:
                    raw, dedup_key = parse_pagerduty_change(data), None
                else:
                    _event, raw = parse_pagerduty_event(data)
                    dedup_key = raw.dedup_key
            except ValidationError as exc:
                return await reject(400, [_pd_error(e) for e in _field_errors(exc)])
            try:
                _rid, results, warnings = await run_in_threadpool(
                    state.accept, source="pagerduty", auth=auth, body=body, remote=remote, raws=[raw])
            except RegisterUnavailable as exc:
                logger.error("intake pagerduty: register unavailable: %s", exc)
                return JSONResponse({"status": "unavailable", "message": state.text("unavailable"),
                                     "errors": [str(exc)[:500]]}, status_code=503,
                                    headers={"Retry-After": str(state.intake.retry_after_seconds)})
            if change:
                out: dict[str, Any] = {"status": "success", "message": "Change event processed"}
            else:
                out = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
            if warnings:
                out["warnings"] = warnings
            return JSONResponse(out, status_code=202)

        return handler

    # --- reading ------------------------------------------------------------------------------

    async def get_signal(request: Request) -> JSONResponse:
        try:
            auth = authenticate(request, b"")
        except AuthError as exc:
            return error(401, "unauthorized", reason=exc.reason, detail=exc.detail)
        signal_id = request.path_params["signal_id"]

        def read() -> dict[str, Any] | None:
            state.ensure_ready()
            with session_scope(state.engine, read_only=True) as db_session:
                row = db_session.get(SignalRecord, signal_id)
                if row is None:
                    return None
                items = service.list_outbox(db_session=db_session, signal_id=row.id)
                return _signal_json(row, items)

        try:
            found = await run_in_threadpool(read)
        except (RegisterUnavailable, SQLAlchemyError) as exc:
            return error(503, "unavailable", detail=str(exc)[:500])
        if found is None:
            return error(404, "not_found", signal_id=signal_id)
        logger.debug("signal %s read by %s", signal_id, auth.credential.name)
        return JSONResponse(found)

    # --- acknowledging ------------------------------------------------------------------------

    async def ack_incident(request: Request) -> JSONResponse:
        incident_id = request.path_params["incident_id"]
        received = await authenticated_body(request)
        if isinstance(received, JSONResponse):
            return received
        body, auth = received
        remote = _remote(request)

        async def reject(status: int, key: str, errors: list[dict[str, str]], **extra: Any) -> JSONResponse:
            summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
            await run_in_threadpool(state.record_rejection, source="ack", auth=auth, body=body, remote=remote,
                                    http_status=status, error=f"{key}: {incident_id}: {summary}")
            return error(status, key, errors=errors, detail=summary, **extra)

        if not auth.credential.allows("ack"):
            return await reject(403, "forbidden", [{"field": "(credential)", "reason":
                                f"credential {auth.credential.name!r} may use "
                                f"{', '.join(auth.credential.sources)}, not ack"}])
        try:
            data = _json(body)
        except Malformed as exc:
            return await reject(400, "malformed", [{"field": "(body)", "reason": str(exc)}])
        try:
            ask = AckRequest.model_validate(data)
        except ValidationError as exc:
            return await reject(422, "invalid", _field_errors(exc))
        try:
            contacts = await run_in_threadpool(state.contacts)
        except ContactsError as exc:
            logger.error("intake ack: %s", exc)
            return error(500, "contacts", detail=str(exc)[:500])
        try:
            by = check_person(contacts=contacts, person_id=ask.by)
        except UnknownPerson as exc:
            return await reject(422, "invalid", [{"field": "by", "reason": str(exc)}],
                                known_people=[p.id for p in contacts.people])
        try:
            request_id, result, seconds = await run_in_threadpool(
                state.acknowledge_api, auth=auth, body=body, remote=remote, incident_id=incident_id, by=by,
                note=ask.note)
        except Replay:
            return error(401, "unauthorized", reason="replayed_signature",
                         detail="this signature was already used; sign every request anew")
        except service.NotFound:
            return await reject(404, "incident_not_found", [{"field": "incident_id", "reason":
                                f"incident {incident_id!r} is not in the register"}], incident_id=incident_id)
        except IncidentClosed as exc:
            return await reject(409, "incident_closed", [{"field": "incident_id", "reason": str(exc)}],
                                incident_id=incident_id, incident_status=exc.status)
        except RegisterUnavailable as exc:
            logger.error("intake ack: register unavailable: %s", exc)
            return error(503, "unavailable", detail=str(exc)[:500])
        out = {**result.as_dict(), "mtta_seconds": seconds, "credential": auth.credential.name,
               "request_id": request_id, "message": state.text("acknowledged" if result.first else "acknowledged_again")}
        return JSONResponse(out, status_code=200, background=BackgroundTask(
            state.stop_escalation, incident_id=result.incident_id, message=f"acknowledged by {by} via api"))

    async def ack_link(request: Request) -> HTMLResponse:
        redeem = request.method == "POST"
        page = await run_in_threadpool(state.link_page, token=request.path_params["token"], redeem=redeem,
                                       remote=_remote(request))
        nonce = secrets.token_urlsafe(16)
        headers = {
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
                                        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
        }
        if page.status_code == 503:
            headers["Retry-After"] = str(state.intake.retry_after_seconds)
        background = None
        if page.stop is not None:
            incident_id, message = page.stop
            background = BackgroundTask(state.stop_escalation, incident_id=incident_id, message=message)
        return HTMLResponse(state.render_page(page.context, nonce=nonce), status_code=page.status_code,
                            headers=headers, background=background)

    async def healthz(request: Request) -> JSONResponse:
        def check() -> dict[str, Any]:
            # A fresh register has no tables until migrated; a readiness probe must not wait
            # for a first alert to do it.
            state.ensure_ready()
            with state.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
                conn.execute(text("SELECT 1"))
            revision = current_revision(state.engine)
            out: dict[str, Any] = {"reachable": True, "revision": revision}
            try:
                with session_scope(state.engine, read_only=True) as db_session:
                    out["outbox"] = service.outbox_stats(db_session=db_session)
            except SQLAlchemyError as exc:
                out["outbox"] = None
                out["outbox_error"] = str(getattr(exc, "orig", exc))[:300]
            return out

        try:
            register = await run_in_threadpool(check)
        except Exception as exc:  # noqa: BLE001 — any failure means "not reachable"
            return JSONResponse({"status": "unavailable", "register": {"reachable": False,
                                 "error": f"{type(exc).__name__}: {exc}"[:500]}}, status_code=503)
        ok = register.get("outbox") is not None
        return JSONResponse({"status": "ok" if ok else "degraded", "register": register,
                             "routes": len(state.router.routes),
                             "credentials": len(state.credentials.credentials)}, status_code=200 if ok else 503)

    app = Starlette(routes=[
        HttpRoute("/api/v1/alertmanager", make_handler("alertmanager", parse_alertmanager), methods=["POST"]),
        HttpRoute("/api/v1/grafana", make_handler("grafana", parse_grafana), methods=["POST"]),
        HttpRoute("/api/v1/signals", make_handler("generic", parse_generic), methods=["POST"]),
        HttpRoute("/api/v1/signals/{signal_id}", get_signal, methods=["GET"]),
        HttpRoute("/api/v1/incidents/{incident_id}/ack", ack_incident, methods=["POST"]),
        HttpRoute("/ack/{token}", ack_link, methods=["GET", "POST"]),
        *(HttpRoute(path, make_handler(source, parse, store), methods=["POST"])
          for path, (source, parse, store) in DOCUMENT_ENDPOINTS.items()),
        HttpRoute("/v2/enqueue", make_pd_handler(change=False), methods=["POST"]),
        HttpRoute("/v2/change/enqueue", make_pd_handler(change=True), methods=["POST"]),
        HttpRoute("/healthz", healthz, methods=["GET"]),
    ])
    app.state.intake = state
    return app


def _signal_json(row: SignalRecord, items: list[OutboxItem]) -> dict[str, Any]:
    return {
        "id": row.id, "incident_id": row.incident_id, "source": row.source, "emergency_type": row.emergency_type,
        "resource": row.resource, "labels": row.labels, "dedup_key": row.dedup_key,
        "observed_at": row.observed_at.isoformat(), "received_at": row.received_at.isoformat(),
        "drill": row.drill, "summary": row.summary, "payload": row.payload, "action": row.action,
        "status": row.status, "fingerprint": row.fingerprint, "group_key": row.group_key,
        "events": [{"id": i.id, "event": i.payload.get("event"), "status": i.status, "attempts": i.attempts,
                    "last_error": i.last_error} for i in items],
    }


def _page_environment(settings: Settings, language: str) -> Any:
    """Jinja2 (autoescaped) over ``templates/<language>`` then ``templates/zh-CN``."""
    import jinja2

    from ledgerguard.channels.messaging import format_dt, level_label

    base = Path(settings.templates_dir)
    search = [str(base / language)] + ([str(base / "zh-CN")] if language != "zh-CN" else [])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search, encoding="utf-8"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    tz = settings.timezone or "Asia/Shanghai"
    env.filters["dt"] = lambda value, fmt=None: format_dt(value, fmt, tz=tz)
    env.filters["level_label"] = lambda value: level_label(value, language)
    return env


def serve_intake(*, host: str | None = None, port: int | None = None, settings: Settings | None = None) -> None:
    """Run the intake alone with uvicorn (blocking)."""
    import uvicorn

    intake = IntakeSettings()
    uvicorn.run(create_app(settings=settings, intake=intake), host=host or intake.host, port=port or intake.port,
                log_level="info")
