"""The running stack with short escalation waits, for the people-in-the-loop tests.

Prefect server, every deployment served by `ledgerguard serve`, the relay, the intake on a real
port (acknowledgement links point at it) and an SMTP sink. The catalog is a copy whose chains
wait seconds instead of minutes; a test may edit it (or the agency's roster) while the stack
runs, since every flow run reads both afresh.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.served import Served, api, running_intake, served_stack, wait_for

FAST = 0.1   # minutes: a 四级 round waits 6 s
SLOW = 2.0   # minutes: the first 一级 round waits long enough for a person to fill the form
VIP_CLIENT = "C0005"
APPROVAL_MINUTES = 0.2
UNATTENDED = "unattended"   # runs requested by this name get no approver
LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack/[A-Za-z0-9_.-]+")


def short_chains() -> dict:
    fast = [{"notify": "routing", "wait_minutes": FAST}, {"notify": ["owner"], "wait_minutes": FAST},
            {"notify": ["hr"], "wait_minutes": FAST}]
    slow = [{"notify": "routing", "wait_minutes": SLOW}, {"notify": ["owner"], "wait_minutes": FAST}]
    return {1: slow, 2: slow, 3: slow, 4: fast}


def write_chains(catalog: Path, chains: dict) -> None:
    path = catalog / "rubric.yaml"
    rubric = yaml.safe_load(path.read_text(encoding="utf-8"))
    rubric["escalation"] = chains
    path.write_text(yaml.safe_dump(rubric, allow_unicode=True, sort_keys=False), encoding="utf-8")


@dataclass
class PeopleStack:
    served: Served
    intake_url: str
    catalog: Path
    _texts: dict = field(default_factory=dict, repr=False)

    @property
    def home(self) -> Path:
        return self.served.home

    def contacts(self):
        from ledgerguard.channels.contacts import load_contacts

        return load_contacts(self.home / "agency" / "contacts.yaml")

    def person_with(self, role: str):
        return next(p for p in self.contacts().people if role in p.roles)

    def break_ledger(self, client_id: str, count: int = 5) -> None:
        from ledgerguard.agency import load_agency
        from ledgerguard.detectors import get_injector
        from ledgerguard.detectors.base import InjectionContext

        get_injector("ledger.delete_vouchers").inject(
            InjectionContext(agency=load_agency(self.home / "agency"), resource=f"ledger:{client_id}",
                             scratch_dir=self.home / "scratch"), count=count)

    def run_ledger_loss(self, client_id: str, *, dedup_key: str, remediate: bool = False,
                        requested_by: str = "test") -> str:
        deployment = self.served.deployment("ledger-loss", "ledger-loss")
        response = api("POST", f"{self.served.api_url}/deployments/{deployment['id']}/create_flow_run", json={
            "parameters": {"request": {"client_id": client_id, "dedup_key": dedup_key, "remediate": remediate,
                                       "requested_by": requested_by, "source": "test"}}})
        response.raise_for_status()
        return response.json()["id"]

    def incident(self, dedup_key: str, timeout: float = 120):
        from sqlalchemy import select

        from ledgerguard.register.models import Incident

        runtime = self.served.runtime()

        def classified():
            with runtime.session() as db_session:
                row = db_session.scalars(select(Incident).where(Incident.dedup_key == dedup_key)).first()
                if row is not None and row.frozen_escalation:
                    db_session.expunge(row)
                    return row
            return None

        return wait_for(classified, timeout=timeout, what=f"incident {dedup_key} graded and its chain frozen")

    def reload(self, incident_id: str):
        from ledgerguard.register import service as register

        with self.served.runtime().session() as db_session:
            row = register.get_incident(db_session=db_session, incident_id=incident_id)
            db_session.expunge(row)
            return row

    def timeline(self, incident_id: str) -> list:
        from ledgerguard.register import service as register

        with self.served.runtime().session() as db_session:
            entries = register.get_timeline(db_session=db_session, incident_id=incident_id)
            for e in entries:
                db_session.expunge(e)
            return entries

    def mails(self, incident_id: str, subject: str = "", to: str | None = None) -> list:
        """Mails about the incident whose subject contains ``subject`` (starts with it when it
        begins with ``^``), to ``to`` when given."""
        found = []
        for message in self.served.sink.messages():
            text, title = self._text_of(message)
            matches = title.startswith(subject[1:]) if subject.startswith("^") else subject in title
            if incident_id in text and matches and (to is None or to in str(message["to"])):
                found.append(message)
        return found

    def _text_of(self, message) -> tuple[str, str]:
        # The sink hands out the same parsed message each poll; decode its body once.
        known = self._texts.get(id(message))
        if known is None or known[0] is not message:
            body = message.get_body(preferencelist=("plain",))
            known = (message, body.get_content() if body is not None else "", str(message["subject"]))
            self._texts[id(message)] = known
        return known[1], known[2]

    def wait_mail(self, incident_id: str, subject: str = "", to: str | None = None, timeout: float = 90):
        return wait_for(lambda: self.mails(incident_id, subject, to), timeout=timeout,
                        what=f"a mail {subject!r} to {to or 'anyone'} about {incident_id}")

    def escalation_runs(self, incident_id: str) -> list[dict]:
        response = api("POST", f"{self.served.api_url}/flow_runs/filter", json={
            "flow_runs": {"tags": {"all_": ["escalation", f"incident:{incident_id}"]}},
            "sort": "EXPECTED_START_TIME_ASC"})
        response.raise_for_status()
        return response.json()

    def link_in(self, message) -> str:
        text = message.get_body(preferencelist=("plain",)).get_content()
        match = LINK.search(text)
        assert match, f"no acknowledgement link in:\n{text}"
        return match.group(0)

    def click(self, link: str) -> httpx.Response:
        page = httpx.get(link, timeout=30)
        assert page.status_code == 200, page.text
        return httpx.post(link, timeout=30)


@pytest.fixture(scope="module")
def people(tmp_path_factory, agency_template):
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.embedded import free_port
    from tests.support.people import approving

    root = tmp_path_factory.mktemp("people")
    catalog = root / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog)
    write_chains(catalog, short_chains())
    # A VIP client's lost ledger is 一级 in this catalog: one more rule, graded by the real rubric.
    ledger_loss = catalog / "ledger_loss.yaml"
    entry = yaml.safe_load(ledger_loss.read_text(encoding="utf-8"))
    entry["severity"]["rules"].append({"id": "vip_ledger_first", "when": "vip", "impact": "H", "urgency": "H",
                                       "text": {"zh": "VIP客户账套（测试用规则）", "en": "VIP client's ledger (test rule)"}})
    # …and its swap-in waits 12 s for an approval.
    next(s for s in entry["runbook"] if s["id"] == "swap_in")["approval_minutes"] = APPROVAL_MINUTES
    ledger_loss.write_text(yaml.safe_dump(entry, allow_unicode=True, sort_keys=False), encoding="utf-8")

    # Backup failures must be resolved within 36 s here: their checklist runs out of time.
    backup = catalog / "backup_failure.yaml"
    entry = yaml.safe_load(backup.read_text(encoding="utf-8"))
    entry["sla"]["levels"] = {lvl: {"resolve_hours": 0.01} for lvl in (1, 2, 3, 4)}
    backup.write_text(yaml.safe_dump(entry, allow_unicode=True, sort_keys=False), encoding="utf-8")

    agency = root / "agency"
    shutil.copytree(agency_template, agency)
    clients = agency / "clients.csv"
    lines = clients.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    vip = header.index("vip")
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        cells[vip] = "true" if cells[0] == VIP_CLIENT else "false"
        lines[i] = ",".join(cells)
    clients.write_text("\n".join(lines) + "\n", encoding="utf-8")

    port = free_port()
    env = {"LEDGERGUARD_CATALOG_DIR": str(catalog), "LEDGERGUARD_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    def approve_unless_unattended(run):
        if (run.parameters.get("request") or {}).get("requested_by") == UNATTENDED:
            return None
        from tests.support.people import form_options

        return {"approver": form_options(run, "approver")[0], "decision": "approve", "reason": "已核对"}

    with served_stack(root / "home", agency, env=env) as served, \
            approving(api_url=served.api_url, choose=approve_unless_unattended), \
            running_intake(served.home, port) as url:
        yield PeopleStack(served=served, intake_url=url, catalog=catalog)
