"""A person's decision on a notice draft, as a Prefect task (the `send-notice` flow's only stage)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.notices.models import NoticeDecision
from ledgerguard.runtime import get_runtime


# No retries: a refused decision (wrong person, changed file) must fail once with its reason, and a
# delivery is idempotent anyway — running the form again sends nothing twice.
@task(name="decide-notice", cache_policy=NO_CACHE)
def decide_notice(decision: NoticeDecision) -> dict:
    from ledgerguard.notices.sending import decide

    run_id = str(flow_run.id) if flow_run.id else None
    result = decide(runtime=get_runtime(), decision=decision, flow_run_id=run_id, via="ui")
    get_run_logger().info("%s", result.message)
    if result.status == "failed":
        raise RuntimeError(result.message)
    return {"status": result.status, "message": result.message, "notice": result.notice,
            "deliveries": result.deliveries, "obligations_met": result.obligations_met}
