"""One-click acknowledgement links through the intake: GET shows the page and spends nothing, POST
acknowledges once; used, expired, forged, re-bound and closed links get a clear page, never a 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlalchemy import text, update

from ledgerguard.acknowledgement.links import issue_link, link_key
from ledgerguard.models import IncidentStatus, Signal
from ledgerguard.register import service as register
from ledgerguard.register.db import session_scope
from ledgerguard.register.models import AckLink, Incident, utcnow
from tests.intake.conftest import credentials_file, make_client  # noqa: F401 — fixtures used here

BASE = "https://lg.agency.example"


@pytest.fixture
def person(agency_dir) -> dict:
    return yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"][0]


@pytest.fixture
def client(make_client, agency_dir, monkeypatch):  # noqa: F811
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no Prefect: the escalation stop is skipped
    client = make_client()
    client.app.state.intake.ensure_ready()
    return client


@pytest.fixture
def db(client):
    engine = client.app.state.intake.engine
    return lambda: session_scope(engine)


def _open(db, resource: str = "ledger:C0001", title: str = "凭证数骤降") -> str:
    with db() as s:
        incident, _ = register.open_or_join_incident(
            db_session=s, title=title, signal=Signal(source="test", emergency_type="ledger_loss", resource=resource))
        return incident.id


def _issue(client, db, incident_id: str, person_id: str, *, ttl=timedelta(hours=24), now=None) -> str:
    """Issue a link as a notification would and return its path (``/ack/<token>``)."""
    settings = client.app.state.intake.settings
    with db() as s:
        url = issue_link(db_session=s, key=link_key(settings), base_url=BASE, incident_id=incident_id,
                         person_id=person_id, recipient=f"{person_id}@agency.example", ttl=ttl, now=now)
    assert url.startswith(f"{BASE}/ack/")
    return url.removeprefix(BASE)


def test_get_shows_the_page_with_a_self_submitting_form_and_spends_nothing(client, db, person):
    incident_id = _open(db, title="<b>凭证</b>数骤降")
    path = _issue(client, db, incident_id, person["id"])
    for _ in range(2):  # a mail scanner's prefetch, then the person: both see the page
        r = client.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
        page = r.text
        assert incident_id in page and person["name"] in page and person["id"] in page
        assert '<form id="ack-form" method="post">' in page and "form.submit()" in page
        assert "确认接手" in page
        assert "&lt;b&gt;凭证&lt;/b&gt;" in page and "<b>凭证</b>" not in page  # autoescaped
        nonce = r.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in page
        assert page.count(path.removeprefix("/ack/")) == 0  # the token is not echoed into the page
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_at is None
        assert s.query(AckLink).one().used_at is None


def test_post_acknowledges_via_link_once_then_the_link_is_used(client, db, person):
    incident_id = _open(db)
    path = _issue(client, db, incident_id, person["id"])
    r = client.post(path)
    assert r.status_code == 200, r.text
    assert "已确认接手" in r.text and person["name"] in r.text and "MTTA" in r.text and "分钟" in r.text
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "acknowledged" and incident.acknowledged_via == "link"
        assert incident.acknowledged_by == person["id"]
        acked = [e for e in register.get_timeline(db_session=s, incident_id=incident_id) if e.kind == "acknowledged"]
        assert len(acked) == 1 and acked[0].data["by"] == person["id"] and acked[0].data["via"] == "link"
        link = s.query(AckLink).one()
        assert link.used_at is not None and link.used_from == "203.0.113.7"

    again = client.post(path)
    assert again.status_code == 410 and "已经使用过" in again.text
    assert person["id"] in again.text  # says who acknowledged the incident
    assert client.get(path).status_code == 410
    with db() as s:
        kinds = [e.kind for e in register.get_timeline(db_session=s, incident_id=incident_id)]
        assert kinds.count("acknowledged") == 1 and "acknowledged.again" not in kinds


def test_a_link_after_someone_else_acknowledged_is_kept_as_a_second_acknowledgement(client, db, agency_dir):
    people = yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]
    incident_id = _open(db)
    first = _issue(client, db, incident_id, people[0]["id"])
    second = _issue(client, db, incident_id, people[1]["id"])
    assert client.post(first).status_code == 200
    r = client.post(second)
    assert r.status_code == 200 and "此前已由" in r.text
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_by == people[0]["id"]
        kinds = [e.kind for e in register.get_timeline(db_session=s, incident_id=incident_id)]
        assert kinds.count("acknowledged") == 1 and kinds.count("acknowledged.again") == 1


def test_an_expired_link_is_410_and_acknowledges_nothing(client, db, person):
    incident_id = _open(db)
    path = _issue(client, db, incident_id, person["id"], ttl=timedelta(hours=24),
                  now=utcnow() - timedelta(hours=25))
    r = client.get(path)
    assert r.status_code == 410 and "已过期" in r.text
    assert client.post(path).status_code == 410
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_at is None


def test_an_altered_signature_and_an_unknown_link_are_404(client, db, person):
    incident_id = _open(db)
    path = _issue(client, db, incident_id, person["id"])
    flipped = path[:-1] + ("A" if path[-1] != "A" else "B")
    for bad, reason in ((flipped, "签名不符"), ("/ack/" + "0" * 32 + ".abc", "无法识别"), ("/ack/garbage", "无法识别")):
        for method in ("GET", "POST"):
            r = client.request(method, bad)
            assert r.status_code == 404, (bad, method, r.status_code)
            assert reason in r.text and incident_id not in r.text  # nothing is revealed
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_at is None
        assert s.query(AckLink).one().used_at is None


def test_a_link_re_bound_to_another_incident_in_the_register_is_forged(client, db, person):
    incident_id = _open(db, "ledger:C0001")
    other_id = _open(db, "ledger:C0002")
    path = _issue(client, db, incident_id, person["id"])
    with db() as s:
        s.execute(update(AckLink).values(incident_id=other_id))
    assert client.get(path).status_code == 404
    r = client.post(path)
    assert r.status_code == 404 and "签名不符" in r.text
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_at is None
        assert s.get(Incident, other_id).acknowledged_at is None


def test_a_link_for_a_resolved_incident_is_410_closed(client, db, person):
    incident_id = _open(db)
    path = _issue(client, db, incident_id, person["id"])
    with db() as s:
        register.set_status(db_session=s, incident_id=incident_id, status=IncidentStatus.RESOLVED, actor="test")
    r = client.get(path)
    assert r.status_code == 410 and "已经结束" in r.text and incident_id in r.text
    assert client.post(path).status_code == 410
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.acknowledged_at is None and incident.status == "resolved"
        assert s.query(AckLink).one().used_at is None


def test_english_pages_and_a_register_that_cannot_be_read_answers_503(make_client, agency_dir, monkeypatch,  # noqa: F811
                                                                     person):
    from ledgerguard.config import reset_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("LEDGERGUARD_LANGUAGE", "en")
    reset_settings()
    client = make_client()
    client.app.state.intake.ensure_ready()
    engine = client.app.state.intake.engine
    db = lambda: session_scope(engine)  # noqa: E731
    incident_id = _open(db)
    path = _issue(client, db, incident_id, person["id"])
    page = client.get(path)
    assert page.status_code == 200 and "Acknowledge the incident" in page.text and 'lang="en"' in page.text
    done = client.post(path)
    assert done.status_code == 200 and "Acknowledged" in done.text and "min" in done.text
    assert "already used" in client.post(path).text

    with db() as s:
        s.execute(text("DROP TABLE ack_links"))
    down = client.get(path)
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    assert "Cannot acknowledge right now" in down.text
