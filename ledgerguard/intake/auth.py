"""Who may send signals: credentials, bearer tokens, HMAC signatures, PagerDuty routing keys.

Credentials come from ``<home>/intake-credentials.yaml`` (re-read when the file changes) and from
``LEDGERGUARD_INTAKE_TOKENS``::

    # <home>/intake-credentials.yaml
    credentials:
      - name: prometheus            # recorded as the actor / requested_by of what it sends
        token: "4f9c…"              # bearer token, HMAC key and PagerDuty routing_key (>= 16 chars)
        sources: [alertmanager, grafana]   # endpoints it may use; "*" = all (default)
      - name: pd-bridge
        token: "R0UTINGKEY…"
        hmac_secret: "…"            # optional: a separate HMAC key
        sources: [pagerduty]
      - name: duty-desk
        token: "9b1e…"
        sources: [ack]              # may only acknowledge incidents (POST /api/v1/incidents/{id}/ack)

    LEDGERGUARD_INTAKE_TOKENS="prometheus:4f9c…:alertmanager+grafana,ops:abcd…"

A request authenticates with ``Authorization: Bearer <token>`` or ``X-LedgerGuard-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` (several ``v1=`` allowed, for key
rotation), or for the PagerDuty endpoints with the event's ``routing_key``. Every comparison is
constant-time and runs over every credential, so timing says nothing about which one is close.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerguard.intake.models import SOURCES

logger = logging.getLogger("ledgerguard.intake")

SIGNATURE_HEADER = "X-LedgerGuard-Signature"
ALL = "*"
MIN_TOKEN_LENGTH = 16


class Credential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")
    token: str = Field(min_length=MIN_TOKEN_LENGTH, max_length=512)
    hmac_secret: str | None = Field(None, min_length=MIN_TOKEN_LENGTH, max_length=512)
    sources: tuple[str, ...] = (ALL,)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        for s in value or []:
            if s != ALL and s not in SOURCES:
                raise ValueError(f"unknown source {s!r}; one of {', '.join(SOURCES)} or '*'")
        return tuple(value or ())

    @property
    def signing_key(self) -> bytes:
        return (self.hmac_secret or self.token).encode("utf-8")

    def allows(self, source: str) -> bool:
        return ALL in self.sources or source in self.sources


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: list[Credential] = Field(default_factory=list)


class CredentialsError(ValueError):
    """The credentials file or LEDGERGUARD_INTAKE_TOKENS cannot be read."""


class AuthError(Exception):
    """401 (or 403 for ``scope``): ``reason`` is a short code, ``detail`` says what is wrong."""

    def __init__(self, reason: str, detail: str, *, status: int = 401, credential: Credential | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.credential = credential


@dataclass(frozen=True)
class Authenticated:
    credential: Credential
    method: str  # bearer | hmac | routing_key
    signature: str | None = None  # the v1 signature that matched (replay protection)


def parse_tokens_env(value: str | None) -> list[Credential]:
    """``name:token[:source+source],…`` → credentials."""
    out: list[Credential] = []
    for i, part in enumerate(p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        bits = part.split(":")
        if len(bits) not in (2, 3) or not bits[0] or not bits[1]:
            raise CredentialsError(f"LEDGERGUARD_INTAKE_TOKENS item {i + 1}: expected name:token[:source+source]")
        sources = tuple(bits[2].split("+")) if len(bits) == 3 and bits[2] else (ALL,)
        try:
            out.append(Credential(name=bits[0], token=bits[1], sources=sources))
        except ValidationError as exc:
            raise CredentialsError(f"LEDGERGUARD_INTAKE_TOKENS item {i + 1} ({bits[0]}): "
                                   + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                               for e in exc.errors())) from None
    return out


def load_credentials_file(path: Path) -> list[Credential]:
    if not path.is_file():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return CredentialsFile.model_validate(raw).credentials
    except yaml.YAMLError as exc:
        raise CredentialsError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise CredentialsError(f"{path}: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


class CredentialStore:
    """The credentials in force: the file (re-read when its mtime changes) plus the env tokens."""

    def __init__(self, *, path: Path, env_tokens: str | None = None) -> None:
        self.path = path
        self._env = parse_tokens_env(env_tokens)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._file: list[Credential] = []
        self._reload(strict=True)

    def _reload(self, *, strict: bool = False) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp and (stamp is not None or not self._file):
            return
        try:
            creds = load_credentials_file(self.path) if stamp else []
        except CredentialsError:
            if strict:
                raise
            logger.exception("intake credentials not reloaded; keeping the previous ones")
            return
        names = [c.name for c in creds + self._env]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            message = f"{self.path}: credential names used twice: {', '.join(dupes)}"
            if strict:
                raise CredentialsError(message)
            logger.error("%s; keeping the previous credentials", message)
            return
        self._file, self._stamp = creds, stamp

    @property
    def credentials(self) -> list[Credential]:
        with self._lock:
            self._reload()
            return [*self._file, *self._env]

    # --- the three ways in ---------------------------------------------------------------

    def by_token(self, token: str) -> Credential | None:
        found = None
        given = token.encode("utf-8")
        for cred in self.credentials:  # no early exit: constant time over the set
            if hmac.compare_digest(given, cred.token.encode("utf-8")) and found is None:
                found = cred
        return found

    def authenticate(self, *, headers: dict[str, str], body: bytes, tolerance_seconds: int,
                     now: float | None = None) -> Authenticated:
        """Bearer token or HMAC signature (the signature wins when both are sent)."""
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is not None:
            return self._by_signature(signature, body, tolerance_seconds, time.time() if now is None else now)
        authorization = headers.get("authorization")
        if not authorization:
            raise AuthError("missing_token", "no credentials: send 'Authorization: Bearer <token>' or "
                                             f"'{SIGNATURE_HEADER}: t=<unix>,v1=<hmac>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing_token", "the Authorization header must be 'Bearer <token>'")
        cred = self.by_token(token.strip())
        if cred is None:
            raise AuthError("invalid_token", "the bearer token is not valid")
        return Authenticated(cred, "bearer")

    def by_routing_key(self, routing_key: str) -> Authenticated:
        cred = self.by_token(routing_key)
        if cred is None:
            raise AuthError("invalid_token", "the routing_key is not valid")
        return Authenticated(cred, "routing_key")

    def _by_signature(self, header: str, body: bytes, tolerance: int, now: float) -> Authenticated:
        stamp, candidates = None, []
        for item in header.split(","):
            k, _, v = item.strip().partition("=")
            if k == "t":
                stamp = v
            elif k == "v1" and v:
                candidates.append(v.lower())
        if stamp is None or not stamp.isdigit() or not candidates:
            raise AuthError("bad_signature", f"{SIGNATURE_HEADER} must be 't=<unix seconds>,v1=<hex hmac-sha256>'")
        if abs(now - int(stamp)) > tolerance:
            raise AuthError("expired_timestamp", f"the signature timestamp t={stamp} is more than {tolerance} s "
                                                 "from the intake's clock")
        message = stamp.encode("ascii") + b"." + body
        found: Authenticated | None = None
        for cred in self.credentials:
            expected = hmac.new(cred.signing_key, message, hashlib.sha256).hexdigest()
            for candidate in candidates:
                if hmac.compare_digest(expected, candidate) and found is None:
                    found = Authenticated(cred, "hmac", signature=candidate)
        if found is None:
            raise AuthError("bad_signature", "the signature does not match the body for any credential")
        return found


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``X-LedgerGuard-Signature`` header value for ``body`` (for senders and tests)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
