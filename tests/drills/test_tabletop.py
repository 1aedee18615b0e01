"""A tabletop drill: the run walks the runbook and asks each step through a paused run's form
(the UI's Resume dialog); the answers are scored and reported like a live drill's."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time

import pytest

pytestmark = pytest.mark.prefect


@contextlib.contextmanager
def team_answering(*, level: int, skip: set[str], ready: bool = True):
    """The team at the table: answers the grading form and every step form except ``skip``."""
    from tests.support.people import answer, form_options, paused_runs

    stop = threading.Event()
    given: list[str] = []

    def loop() -> None:
        seen: set[str] = set()
        while not stop.is_set():
            try:
                for run in paused_runs("tabletop-"):
                    key = run.state.state_details.pause_key
                    if key in seen:
                        continue
                    seen.add(key)
                    if key.endswith("-grading"):
                        answer(run, {"level": level, "first_notified": "duty_lead", "note": "按评级表"})
                    elif not any(key.endswith("-" + s.replace("_", "-")) for s in skip):
                        answer(run, {"owner": form_options(run, "owner")[0], "action": "按清单执行并记录",
                                     "minutes": 5, "ready": ready})
                    else:
                        continue
                    given.append(key)
            except Exception:  # noqa: BLE001 — the run may have just moved on; look again
                pass
            time.sleep(0.2)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(loop,), daemon=True)
    thread.start()
    try:
        yield given
    finally:
        stop.set()
        thread.join(timeout=5)


def test_a_tabletop_walks_the_runbook_through_forms_and_scores_the_answers(live_unattended):
    from flows import tabletop
    from ledgerguard.drills import service as drills
    from ledgerguard.drills.models import TabletopRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    entry = runtime.catalog.get("ledger_loss")
    skipped = entry.runbook[-1].id  # nobody at the table can answer the last step in time
    before = {p.name for p in live_unattended["sink"].directory.glob("*.eml")}
    with team_answering(level=4, skip={skipped}) as given:
        outcome = tabletop(TabletopRequest(emergency_type="ledger_loss", minutes_per_step=0.05),
                           return_state=True).result()
    assert len(given) == len(entry.runbook)  # the grading and every step but the skipped one
    assert outcome.mode == "tabletop" and outcome.measures["level_matched"]["value"] == 1
    assert outcome.measures["checklist_completion"]["value"] == pytest.approx((len(entry.runbook) - 1)
                                                                              / len(entry.runbook))
    assert outcome.measures["detected"]["value"] is None  # a tabletop detects nothing
    assert any(i["measure"] == "checklist_completion" for i in outcome.improvements)
    with runtime.session() as db_session:
        row = drills.get_drill(db_session=db_session, drill_id=outcome.drill_id)
        assert row.mode == "tabletop" and row.status == "scored" and row.score == outcome.score
        assert row.participants  # the owners the team named
        steps = row.measures["answers"]["steps"]
        assert [s["step_id"] for s in steps if not s["answered"]] == [skipped]
    new = [p for p in live_unattended["sink"].directory.glob("*.eml") if p.name not in before]
    assert new  # the evaluation report
