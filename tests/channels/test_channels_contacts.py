"""contacts.yaml loading and routing: roles → people → channels."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerguard.channels.contacts import (
    ContactsError,
    Recipient,
    drill_recipients,
    load_contacts,
    management_recipients,
    resolve_recipients,
)

CONTACTS = """\
people:
  - id: wang.fang
    name: 王芳
    roles: [manager, duty_lead]
    email: wang.fang@agency.example
    phone: "13812345678"
    wecom: wecombot://WANGKEY
    channels: [email, wecom]
  - id: li.na
    name: 李娜
    roles: [accountants]
    email: li.na@agency.example
    dingtalk: dingtalk://LITOKEN
    channels: [dingtalk, email]
  - id: zhao.lei
    name: 赵磊
    roles: [accountants, it]
    email: zhao.lei@agency.example
    phone: 13900001111
  - id: chen.jing
    name: 陈静
    roles: [owner]
    email: chen.jing@agency.example
    webhook: json://127.0.0.1:9999/hook
    slack: slack://T1/B2/C3
    channels: [webhook, slack]
management_list: [chen.jing@agency.example, board@agency.example, chen.jing@agency.example]
drill_recipients: [drill@agency.example]
"""


@pytest.fixture
def contacts(tmp_path: Path):
    path = tmp_path / "contacts.yaml"
    path.write_text(CONTACTS, encoding="utf-8")
    return load_contacts(path)


def test_load(contacts):
    assert [p.id for p in contacts.people] == ["wang.fang", "li.na", "zhao.lei", "chen.jing"]
    zhao = contacts.person("zhao.lei")
    assert zhao.channels == ["email"]  # default
    assert zhao.phone == "13900001111"  # unquoted YAML number kept as text


def test_roles_to_people_to_channels_in_order(contacts):
    routing = resolve_recipients(contacts=contacts, roles=["manager", "accountants"])
    assert routing.unresolved_roles == []
    assert [(r.person_id, r.channel, r.address) for r in routing.recipients] == [
        ("wang.fang", "email", "wang.fang@agency.example"),
        ("wang.fang", "wecom", "wecombot://WANGKEY"),
        ("li.na", "dingtalk", "dingtalk://LITOKEN"),
        ("li.na", "email", "li.na@agency.example"),
        ("zhao.lei", "email", "zhao.lei@agency.example"),
    ]
    assert routing.recipients[0] == Recipient("wang.fang", "王芳", "manager", "email", "wang.fang@agency.example")


def test_dedup_when_two_roles_match_one_person(contacts):
    routing = resolve_recipients(contacts=contacts, roles=["manager", "duty_lead", "accountants", "it"])
    keys = [(r.person_id, r.channel) for r in routing.recipients]
    assert len(keys) == len(set(keys))
    wang = [r for r in routing.recipients if r.person_id == "wang.fang"]
    assert [r.role for r in wang] == ["manager", "manager"]  # first role that matched wins
    assert keys.count(("zhao.lei", "email")) == 1


def test_client_accountant_through_extra_people(contacts):
    routing = resolve_recipients(
        contacts=contacts,
        roles=["client_accountant", "accountants"],
        extra_people={"client_accountant": ["zhao.lei"]},
    )
    assert routing.unresolved_roles == []
    assert routing.recipients[0] == Recipient("zhao.lei", "赵磊", "client_accountant", "email", "zhao.lei@agency.example")
    # zhao.lei is also an accountants, but is listed once
    assert [(r.person_id, r.channel) for r in routing.recipients].count(("zhao.lei", "email")) == 1


def test_unknown_role_and_unknown_person_are_reported(contacts):
    recipients, unresolved = resolve_recipients(
        contacts=contacts,
        roles=["manager", "regulator_liaison", "client_accountant"],
        extra_people={"client_accountant": ["nobody.here"]},
    )
    assert [r.person_id for r in recipients] == ["wang.fang", "wang.fang"]
    assert unresolved == ["regulator_liaison", "client_accountant"]


def test_client_accountant_without_extra_people_is_unresolved(contacts):
    routing = resolve_recipients(contacts=contacts, roles=["client_accountant"])
    assert routing.recipients == []
    assert routing.unresolved_roles == ["client_accountant"]


def test_management_and_drill_lists(contacts):
    mgmt = management_recipients(contacts)
    assert [(r.person_id, r.name, r.channel, r.address) for r in mgmt] == [
        ("chen.jing", "陈静", "email", "chen.jing@agency.example"),
        ("board@agency.example", "board@agency.example", "email", "board@agency.example"),
    ]
    assert all(r.role == "management" for r in mgmt)
    assert [r.address for r in drill_recipients(contacts)] == ["drill@agency.example"]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("people:\n  - id: a\n    name: A\n    emial: a@x.example\n", r"field people\[0\]\(id=a\)\.emial: Extra inputs"),
        ("people:\n  - id: a\n    name: A\n    channels: [wecom]\n", r"people\[0\]\(id=a\).*wecom"),
        ("people:\n  - id: a\n    name: A\n    channels: [fax]\n    email: a@x.example\n", r"channels\[0\]: Input should be 'email'"),
        ("people:\n  - id: a\n    name: A\n    email: not-an-email\n", r"email: Value error, not an email"),
        ("people:\n  - name: A\n", r"people\[0\]\.id: Field required"),
        ("peoples: []\n", r"field peoples: Extra inputs"),
        ("people:\n  - id: a\n    name: A\n    email: a@x.example\n  - id: a\n    name: B\n    email: b@x.example\n",
         r"appears twice"),
        ("people:\n  - id: a\n    name: A\n", r"people\[0\]\(id=a\): Value error, no contact point"),
        ("people:\n  - id: a\n    name: A\n    email: a@x.example\n    channels: []\n", r"channels is empty"),
        ("- just a list\n", r"expected a mapping"),
        ("people: [\n", r"not valid YAML"),
    ],
)
def test_invalid_contacts_name_file_and_field(tmp_path, yaml_text, expected):
    path = tmp_path / "contacts.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ContactsError, match=expected) as err:
        load_contacts(path)
    assert str(path) in str(err.value)


def test_default_channel_without_email(tmp_path):
    path = tmp_path / "contacts.yaml"
    path.write_text("people:\n  - id: a\n    name: A\n    dingtalk: dingtalk://T\n    roles: [it]\n",
                    encoding="utf-8")
    routing = resolve_recipients(contacts=load_contacts(path), roles=["it"])
    assert [(r.channel, r.address) for r in routing.recipients] == [("dingtalk", "dingtalk://T")]


def test_missing_file(tmp_path):
    with pytest.raises(ContactsError, match="cannot read contacts file"):
        load_contacts(tmp_path / "missing.yaml")
