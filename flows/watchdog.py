"""Watching the watcher, and closing the loop on a resolve from monitoring.

* `page-duty-lead` — started by a Prefect automation (see `deployments.ensure_watchdog_automation`)
  when an emergency flow run (tagged ``emergency:*``) enters Failed or Crashed. It pages the duty
  lead with a link to the run, once per failed root run, and leaves the incident open with a
  timeline entry so a person picks it up. A run that failed before it could open an incident
  opens one from its own request, so nothing waits unseen.
* `resolve-incident` — started by a ``ledgerguard.signal.resolved`` event. The intake has already
  set the status; this notes the resolve on the incident's timeline and sends the report through
  the same idempotent report path as the record stage (one report per incident state).
"""

from __future__ import annotations

from prefect import flow

from tasks.watchdog import page_for_failed_run, record_resolve


@flow(name="page-duty-lead", flow_run_name="page-duty-lead-{flow_run_id}")
def page_duty_lead(flow_run_id: str, state: str = "Failed") -> dict:
    """An emergency flow run failed or crashed: page the duty lead with a link to the run."""
    return page_for_failed_run(flow_run_id, state)


@flow(name="resolve-incident", flow_run_name="resolve-{emergency_type}")
def resolve_incident(emergency_type: str, dedup_key: str, signal_id: str | None = None) -> dict:
    """Monitoring says the condition is gone: note it on the incident and send the report."""
    return record_resolve(emergency_type, dedup_key, signal_id)
