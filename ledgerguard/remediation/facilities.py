"""``facility.check_status``: one view of the site — power (UPS), internet links, staff online and
the agency's own systems (probe targets of the site) — so the duty lead can decide remote work."""

from __future__ import annotations

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.detectors.base import DetectionContext, get_detector
from ledgerguard.detectors.probes import resource_name
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import facilities as fac
from ledgerguard.sources import probes as src

CHECKS = {"power": "facility.ups_alarm", "network": "facility.isp_alarm", "staff": "facility.staff_offline"}


@register_action("facility.check_status")
def check_status(ctx: ActionContext) -> ActionResult:
    from ledgerguard.remediation.etax import current_results

    try:
        site = fac.site(ctx.agency, resource_name(ctx.resource, "office"))
    except (AgencyDataError, ValueError) as exc:
        raise ActionFailed(str(exc)) from None
    status: dict[str, dict] = {}
    problems = []
    for area, detector_id in CHECKS.items():
        dctx = DetectionContext(agency=ctx.agency, resource=f"office:{site['id']}", now=ctx.now,
                                scratch_dir=ctx.scratch_dir, params=dict(ctx.params.get(detector_id, {})))
        try:
            result = get_detector(detector_id).detect(dctx)
        except AgencyDataError as exc:
            status[area] = {"ok": None, "error": str(exc)}
            problems.append(f"{area}: unreadable ({exc})")
            continue
        if result.found:
            status[area] = {"ok": False, "summary": result.finding.summary,
                            "outage_minutes": result.finding.facts.get("outage_minutes")}
            problems.append(f"{area}: {result.finding.summary}")
        else:
            status[area] = {"ok": True, "summary": result.clear_reason}
    try:
        targets = [t for t in src.load_targets(ctx.agency).targets
                   if t.kind == "internal" and t.site == site["id"]]
    except AgencyDataError:
        targets = []
    if ctx.dry_run:
        targets = [t for t in targets if not t.live]
    systems = current_results(ctx, targets, max_age_minutes=30) if targets else []
    down = [r["target"] for r in systems if r["ok"] is False]
    status["systems"] = {"ok": not down, "results": systems}
    if down:
        problems.append(f"systems: {', '.join(down)} not answering")
    if all(s.get("ok") is None for k, s in status.items() if k in CHECKS):
        raise ActionFailed(f"no facility data readable for site {site['id']}", {"status": status})
    summary = (f"site {site['id']}: " + ("; ".join(problems) if problems else
                                         "power, links, staff and systems all normal"))
    return ActionResult(True, summary, {"site": site["id"], "status": status, "problems": problems,
                                        "remote_plan": site.get("remote_plan")})


__all__ = ["check_status"]
