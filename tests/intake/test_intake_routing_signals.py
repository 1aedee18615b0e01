"""Routing file semantics and the Signal → request / event mapping (ledgerguard.signals)."""

from __future__ import annotations

import pytest

from ledgerguard.catalog.service import load_catalog
from ledgerguard.intake.models import RawSignal
from ledgerguard.intake.routing import (
    Routed,
    RoutingError,
    Unrouted,
    check_routes,
    load_routes,
)
from ledgerguard.models import Signal
from ledgerguard.response.models import TYPED_REQUESTS, BackupFailureRequest, LedgerLossRequest
from ledgerguard.signals import RequestError, event_for_signal, request_for_signal, safe_key


def raw(**labels) -> RawSignal:
    return RawSignal(source="alertmanager", action="firing", labels=labels)


def test_default_routes_file_is_valid_and_names_catalog_types():
    router = load_routes()
    assert router.routes and check_routes(router, {e.id for e in load_catalog()}) == []
    [dest] = router.route(raw(alertname="LedgerRowCountDrop", client_id="C0042"))
    assert isinstance(dest, Routed) and (dest.emergency_type, dest.resource) == ("ledger_loss", "ledger:C0042")
    [dest] = router.route(raw(alertname="BackupStale"))
    assert dest.resource == "backups:nightly"  # default() in the template


def test_first_match_wins_continue_goes_on_and_regex_is_anchored(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("""
routes:
  - {name: a, match: {team: books}, match_re: {alertname: "Ledger.*"}, emergency_type: ledger_loss,
     resource: "ledger:{{ labels.client_id }}", continue: true, flap_threshold: 2}
  - {name: b, match_re: {alertname: "Ledger"}, emergency_type: backup_failure, resource: "backups:x"}
  - {name: c, match_re: {alertname: "Ledger.*"}, emergency_type: backup_failure, resource: "backups:y",
     sources: [grafana]}
  - {name: d, match_re: {alertname: "Ledger.*"}, emergency_type: backup_failure, resource: "backups:z"}
  - {name: e, match_re: {alertname: "Ledger.*"}, emergency_type: ransomware, resource: "fileserver:never"}
""", encoding="utf-8")
    router = load_routes(path)
    dests = router.route(raw(alertname="LedgerX", team="books", client_id="C1"))
    assert [(d.route, d.resource) for d in dests] == [("a", "ledger:C1"), ("d", "backups:z")]
    assert dests[0].settings.flap_threshold == 2 and dests[1].settings.flap_threshold == 10
    [only] = router.route(raw(alertname="LedgerX"))  # team missing → "" ≠ books; b needs a full match
    assert only.route == "d"
    [none] = router.route(raw(alertname="Other"))
    assert isinstance(none, Unrouted) and "alertname=Other" in none.reason


def test_group_key_uses_route_and_group_by_labels():
    router = load_routes()
    [a] = router.route(raw(alertname="LedgerRowCountDrop", client_id="C1", instance="x"))
    [b] = router.route(raw(alertname="LedgerRowCountDrop", client_id="C1", instance="y"))
    assert a.group_key == b.group_key == "ledger-loss:ledger_loss:alertname=LedgerRowCountDrop,client_id=C1"


def test_sandboxed_templates_cannot_reach_python(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - {name: x, emergency_type: ledger_loss, "
                    "resource: \"ledger:{{ labels.__class__.__mro__[1].__subclasses__() }}\"}\n", encoding="utf-8")
    [dest] = load_routes(path).route(raw(alertname="A"))
    assert isinstance(dest, Unrouted)


def test_invalid_routing_file_names_the_field(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - {name: x, emergency_type: ledger_loss, resource: 'a', match_re: {a: '('}}\n",
                    encoding="utf-8")
    with pytest.raises(RoutingError, match=r"routes\.0\.match_re"):
        load_routes(path)
    path.write_text("routes:\n  - {name: x, emergency_type: Bad, resource: 'a', colour: red}\n", encoding="utf-8")
    with pytest.raises(RoutingError, match=r"routes\.0\.(emergency_type|colour)"):
        load_routes(path)


def test_request_for_signal_builds_the_typed_flow_request():
    sig = Signal(source="alertmanager", emergency_type="ledger_loss", resource="ledger:C0007", summary="s",
                 payload={"requested_by": "prometheus"})
    request = request_for_signal(sig)
    assert isinstance(request, LedgerLossRequest)
    assert (request.client_id, request.requested_by, request.dedup_key) == ("C0007", "prometheus",
                                                                           "ledger_loss:ledger:C0007")
    by_label = Signal(source="x", emergency_type="ledger_loss", resource="db:ledger", labels={"client_id": "C9"})
    assert request_for_signal(by_label).client_id == "C9"
    backup = request_for_signal(Signal(source="x", emergency_type="backup_failure", resource="backups:weekly"))
    assert isinstance(backup, BackupFailureRequest) and backup.backup_target == "weekly"
    assert request_for_signal(Signal(source="x", emergency_type="change", resource="change:ci")) is None
    with pytest.raises(RequestError, match="fileserver:<share>"):  # never the form's default share
        request_for_signal(Signal(source="x", emergency_type="ransomware", resource="fs:a"))
    with pytest.raises(RequestError, match="client_id"):
        request_for_signal(Signal(source="x", emergency_type="ledger_loss", resource="ledger:C 1"))
    with pytest.raises(RequestError):
        request_for_signal(Signal(source="x", emergency_type="ledger_loss", resource="db:nothing"))


def test_event_for_signal_shape():
    sig = Signal(source="sweep", emergency_type="backup_failure", resource="backups:nightly", drill=True,
                 dedup_key="backup_failure:backups:nightly")
    event = event_for_signal(sig, event_id="0b7c6a55-7f7e-4a57-9a86-2b1c9b0e1f00", action="firing",
                             signal_id="s1", requested_by="nightly-sweep")
    assert set(event) == {"id", "occurred", "event", "resource", "payload"}
    assert event["event"] == "ledgerguard.signal.firing"
    assert event["resource"]["prefect.resource.id"] == "ledgerguard.signal.backup_failure.backup_failure_backups_nightly"
    assert all(isinstance(v, str) for v in event["resource"].values())
    assert event["payload"]["request"]["requested_by"] == "nightly-sweep" and event["payload"]["request"]["drill"]
    assert event_for_signal(sig, event_id="x", action="resolve", request=None)["payload"]["request"] is None
    with pytest.raises(ValueError):
        event_for_signal(sig, event_id="x", action="acknowledge")


def test_safe_key():
    assert safe_key("ledger_loss:ledger:C0001") == "ledger_loss_ledger_C0001"
    assert safe_key("a.b c/d") == "a_b_c_d"
    long = safe_key("x" * 500)
    assert len(long) == 160 and safe_key("x" * 500) == long and safe_key("x" * 499) != long


@pytest.mark.parametrize("emergency_type", sorted(TYPED_REQUESTS))
def test_every_other_type_gets_its_typed_request_from_resource_or_label(emergency_type):
    model = TYPED_REQUESTS[emergency_type]
    value = "2026" if model.resource_field == "year" else ("2026-10" if model.resource_field == "period" else "x-1")
    request = request_for_signal(Signal(source="am", emergency_type=emergency_type,
                                        resource=f"{model.resource_prefix}:{value}"))
    assert isinstance(request, model) and str(getattr(request, model.resource_field)) == value
    shared = request.to_request()
    assert (shared.emergency_type, shared.resource) == (emergency_type, f"{model.resource_prefix}:{value}")
    assert shared.labels == {model.resource_field: value}
    by_label = request_for_signal(Signal(source="am", emergency_type=emergency_type, resource="elsewhere",
                                         labels={model.resource_field: value}))
    assert str(getattr(by_label, model.resource_field)) == value
    with pytest.raises(RequestError):
        request_for_signal(Signal(source="am", emergency_type=emergency_type, resource="elsewhere"))
    with pytest.raises(RequestError):  # a value the form refuses is refused here too, with the field
        request_for_signal(Signal(source="am", emergency_type=emergency_type,
                                  resource=f"{model.resource_prefix}:bad value!"))
