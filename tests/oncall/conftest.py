"""A small hand-written roster over fixed people, for the on-call tests."""

from __future__ import annotations

import pytest

from ledgerguard.channels.contacts import Contacts
from ledgerguard.oncall import parse_roster

PEOPLE = [
    {"id": "wangfang", "name": "王芳", "roles": ["manager"], "email": "wangfang@agency.example", "phone": "13812345678"},
    {"id": "lijun", "name": "李军", "roles": ["duty_lead"], "email": "lijun@agency.example", "phone": "13912345678"},
    {"id": "zhaolei", "name": "赵磊", "roles": ["it"], "email": "zhaolei@agency.example"},
    {"id": "chenjing", "name": "陈静", "roles": ["it"], "email": "chenjing@agency.example"},
]


def roster_data(**changes) -> dict:
    data = {
        "timezone": "Asia/Shanghai",
        "rotations": {
            # Monday 2026-10-05 09:00: wangfang's week, then lijun's from Monday 2026-10-12 09:00.
            "duty_lead": {"kind": "weekly", "members": ["wangfang", "lijun"], "handover": "09:00",
                          "start": "2026-10-05"},
            # Daily at 08:30: zhaolei on 10-05, chenjing on 10-06, zhaolei on 10-07…
            "it": {"kind": "daily", "members": ["zhaolei", "chenjing"], "handover": "08:30",
                   "start": "2026-10-05"},
        },
        "overrides": [
            {"person": "lijun", "role": "duty_lead", "from": "2026-10-07 12:00", "to": "2026-10-08T18:00:00+08:00",
             "reason": "王芳 外出培训"},
        ],
        "quiet_hours": {"hours": "21:00-08:00", "levels": [4]},
    }
    data.update(changes)
    return data


@pytest.fixture
def contacts() -> Contacts:
    return Contacts.model_validate({"people": PEOPLE})


@pytest.fixture
def roster(contacts):
    return parse_roster(roster_data(), source="roster.yaml", contacts=contacts)
