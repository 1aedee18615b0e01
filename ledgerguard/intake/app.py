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
    GET /healthz             register reachability, schema revision and outbox counts

Every accepted request is written to the register in ONE transaction — the ``intake_requests``
row, its signals, the incident status changes and one outbox row per event — before the 202 is
sent. If that write fails (locked after retries, read-only, disk full, unreachable) the answer
is 503 with ``Retry-After``: never a 202 the intake cannot keep. The intake does not talk to
Prefect: a relay delivers the outbox (see ``ledgerguard.signals`` for the event shape).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.config import Settings, get_settings
from ledgerguard.intake.auth import AuthError, Authenticated, CredentialStore
from ledgerguard.intake.documents import DOCUMENT_ENDPOINTS, DocumentRejected
from ledgerguard.intake.models import IntakeSettings, RawSignal
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
from ledgerguard.register.db import current_revision, make_engine, session_scope, upgrade
from ledgerguard.register.models import OutboxItem, SignalRecord
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

    def text(self, key: str) -> str:
        return MESSAGES[self.language][key]

    # --- register ------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                try:
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

    def store_document(store: Callable[[Any, Any], None], data: Any) -> None:
        from ledgerguard.agency import load_agency

        store(data, load_agency(state.settings.agency_path))

    def make_handler(source: str, parse: Callable[[Any], list[RawSignal] | RawSignal],
                     store: Callable[[Any, Any], None] | None = None):
        async def handler(request: Request) -> JSONResponse:
            try:
                body = await _read_body(request, limit)
            except TooLarge:
                return error(413, "too_large", limit_bytes=limit)
            try:
                auth = authenticate(request, body)
            except AuthError as exc:
                return error(401, "unauthorized", reason=exc.reason, detail=exc.detail)
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

    async def healthz(request: Request) -> JSONResponse:
        def check() -> dict[str, Any]:
            # A fresh register has no tables until migrated; a readiness probe must not wait
            # for a first alert to do it.
            state.ensure_ready()
            with state.engine.connect() as conn:
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


def serve_intake(*, host: str | None = None, port: int | None = None, settings: Settings | None = None) -> None:
    """Run the intake alone with uvicorn (blocking)."""
    import uvicorn

    intake = IntakeSettings()
    uvicorn.run(create_app(settings=settings, intake=intake), host=host or intake.host, port=port or intake.port,
                log_level="info")
