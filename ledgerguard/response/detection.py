"""Detect: run a type's detectors over real data and merge what they found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledgerguard.models import Detection, Finding, utcnow


def merge_facts(findings: list[Finding]) -> dict[str, Any]:
    """Combine the facts of several findings on one resource.

    Flags are OR-ed, counts take the largest, client lists are united, so a second detector
    confirming the same loss never lowers what the first one saw.
    """
    merged: dict[str, Any] = {}
    for finding in findings:
        for name, value in finding.facts.items():
            if name not in merged or merged[name] is None:
                merged[name] = value
                continue
            current = merged[name]
            if isinstance(value, bool) and isinstance(current, bool):
                merged[name] = current or value
            elif isinstance(value, (int, float)) and isinstance(current, (int, float)) \
                    and not isinstance(value, bool):
                merged[name] = max(current, value)
            elif isinstance(value, list) and isinstance(current, list):
                merged[name] = list(dict.fromkeys([*current, *value]))
            else:
                merged[name] = value
    if isinstance(merged.get("affected_clients"), list):
        merged["clients_affected"] = max(
            len(merged["affected_clients"]), int(merged.get("clients_affected") or 0)
        )
    return merged


def run_detectors(
    *,
    entry,
    agency,
    resource: str,
    scratch_dir,
    now: datetime | None = None,
    params_override: dict[str, dict[str, Any]] | None = None,
) -> Detection:
    """Run every detector the catalog entry names against the resource.

    A detector that crashes is itself a finding about the data (unreadable, missing): it is
    recorded as a clear reason rather than hiding the incident, and re-raised only when no
    detector could run at all.
    """
    from ledgerguard.detectors import get_detector
    from ledgerguard.detectors.base import DetectionContext

    now = now or utcnow()
    findings: list[Finding] = []
    clear: list[str] = []
    checked: list[str] = []
    errors: list[str] = []
    for ref in entry.detectors:
        detector = get_detector(ref.id)
        params = {**(ref.params or {}), **((params_override or {}).get(ref.id, {}))}
        ctx = DetectionContext(agency=agency, resource=resource, params=params, now=now,
                               scratch_dir=scratch_dir)
        checked.append(ref.id)
        try:
            result = detector.detect(ctx)
        except Exception as exc:  # noqa: BLE001 — reported, never swallowed
            errors.append(f"{ref.id}: {type(exc).__name__}: {exc}")
            clear.append(f"{ref.id}: could not run: {exc}")
            continue
        if result.finding is not None:
            findings.append(result.finding)
        else:
            clear.append(f"{ref.id}: {result.clear_reason}")
    if errors and len(errors) == len(checked):
        raise RuntimeError("no detector could run on %s: %s" % (resource, "; ".join(errors)))
    return Detection(resource=resource, findings=findings, facts=merge_facts(findings),
                     checked=checked, clear_reasons=clear)
