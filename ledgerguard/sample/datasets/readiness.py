"""Sample readiness registers (``readiness/*.yaml``): emergency supplies with their check dates,
the outside people we call (bookkeeping-software support, IT outsourcing, a law firm, the
insurer, the tax hotline), the regulation library, each person's training and drills, and a
RACI of departments for every emergency type of the catalog.

Healthy as of the sample's ``now``: every check, verification and review is recent enough to
stay in date for a month or more, and every person drilled within the last year — so the first
weekly readiness report of a fresh agency shows few or no gaps.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import yaml
from faker import Faker

from ledgerguard.readiness.service import FILES, READINESS_DIR

NAME = "readiness"

# Departments are the roles of contacts.yaml (it = 信息技术, accountants = 会计部, …) so the
# readiness check can hand a gap to the people of the accountable one.
RACI = {
    "etax_outage": (["duty_lead", "accountants"], "manager", ["it"], ["owner"]),
    "filing_backlog": (["accountants", "reviewer"], "manager", ["duty_lead"], ["owner"]),
    "credential_expiry": (["accountants"], "manager", ["it"], ["duty_lead"]),
    "ransomware": (["it", "duty_lead"], "owner", ["legal", "data_protection"], ["manager", "accountants"]),
    "ledger_loss": (["it", "accountants"], "manager", ["duty_lead"], ["owner"]),
    "backup_failure": (["it"], "duty_lead", ["manager"], ["owner"]),
    "saas_outage": (["it", "duty_lead"], "manager", ["accountants"], ["owner"]),
    "vendor_breach": (["data_protection", "it"], "owner", ["legal"], ["manager"]),
    "insider_exfiltration": (["hr", "it"], "owner", ["legal", "data_protection"], ["manager"]),
    "account_takeover": (["it"], "duty_lead", ["data_protection"], ["manager", "owner"]),
    "wrong_filing": (["reviewer", "accountants"], "manager", ["legal"], ["owner"]),
    "payment_failure": (["accountants"], "manager", ["duty_lead"], ["owner"]),
    "annual_deadline": (["accountants"], "manager", ["reviewer"], ["owner"]),
    "urgent_claim": (["accountants", "legal"], "manager", ["data_protection"], ["owner"]),
    "office_outage": (["it", "duty_lead"], "owner", ["hr"], ["accountants", "manager"]),
}
DEFAULT_RACI = (["duty_lead"], "manager", ["it"], ["owner"])

REGULATIONS = [
    ("accounting-law", "中华人民共和国会计法", "全国人民代表大会常务委员会", date(2024, 7, 1), "legal"),
    ("accounting-archives", "会计档案管理办法", "财政部、国家档案局", date(2016, 1, 1), "manager"),
    ("bookkeeping-agency", "代理记账管理办法", "财政部", date(2016, 5, 1), "manager"),
    ("pipl", "中华人民共和国个人信息保护法", "全国人民代表大会常务委员会", date(2021, 11, 1), "data_protection"),
    ("cybersecurity-law", "中华人民共和国网络安全法", "全国人民代表大会常务委员会", date(2017, 6, 1), "it"),
    ("data-security-law", "中华人民共和国数据安全法", "全国人民代表大会常务委员会", date(2021, 9, 1), "data_protection"),
    ("tax-collection-law", "中华人民共和国税收征收管理法", "全国人民代表大会常务委员会", date(2001, 5, 1), "legal"),
]


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a date shared by many records is written out each time
        return True


def _header(text: str, content: Any) -> str:
    return f"# {text}\n" + yaml.dump(content, Dumper=_Dumper, allow_unicode=True, sort_keys=False)


def _emergency_types() -> list[str]:
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.config import get_settings

    return sorted(load_catalog(get_settings().catalog_dir).entries)


def generate(ctx) -> dict[str, Any]:
    rng = ctx.rng(NAME)
    fake = Faker("zh_CN")
    fake.seed_instance(f"{ctx.seed}:{NAME}")
    today = ctx.local_now.date()
    folder = ctx.root / READINESS_DIR
    folder.mkdir(parents=True, exist_ok=True)

    def ago(low: int, high: int) -> date:
        return today - timedelta(days=rng.randint(low, high))

    def ahead(low: int, high: int) -> date:
        return today + timedelta(days=rng.randint(low, high))

    supplies = [
        {"id": "laptop-spare", "kind": "laptop", "name": "备用笔记本电脑（已装记账软件与电子税务局客户端）",
         "location": "行政柜A（上锁）", "quantity": 2, "minimum": 2, "check_every_days": 90,
         "last_checked": ago(5, 40), "owner": "it"},
        {"id": "ukey-etax-spare", "kind": "ukey", "name": "税务UKey（税务数字证书，备用）", "location": "财务保险柜",
         "quantity": 3, "minimum": 2, "check_every_days": 90, "last_checked": ago(5, 40),
         "expires": ahead(200, 600), "owner": "manager"},
        {"id": "ukey-bank", "kind": "ukey", "name": "对公网银UKey（代发工资账户，备用）", "location": "财务保险柜",
         "quantity": 1, "minimum": 1, "check_every_days": 90, "last_checked": ago(5, 40),
         "expires": ahead(300, 700), "owner": "manager"},
        {"id": "ups-server", "kind": "ups", "name": "机房UPS（服务器与交换机）", "location": "机房机柜",
         "check_every_days": 30, "last_checked": ago(2, 10), "expires": ahead(400, 800), "owner": "it"},
        {"id": "ups-frontdesk", "kind": "ups", "name": "前台UPS（路由器与光猫）", "location": "前台弱电箱",
         "check_every_days": 90, "last_checked": ago(5, 40), "expires": ahead(300, 700), "owner": "it"},
        {"id": "offline-filing-kit", "kind": "offline_kit",
         "name": "离线申报包（申报客户端安装包、证书驱动、纸质申报表、客户授权书清单）", "location": "行政柜A",
         "check_every_days": 90, "last_checked": ago(5, 40), "owner": "duty_lead"},
        {"id": "mobile-hotspot", "kind": "network", "name": "4G/5G 随身WiFi（备用上网）", "location": "前台",
         "quantity": 2, "minimum": 1, "check_every_days": 90, "last_checked": ago(5, 40),
         "expires": ahead(120, 330), "owner": "it"},
    ]

    def contact(role_title: str, domain: str, user: str) -> dict[str, str]:
        return {"person": f"{fake.name()}（{role_title}）", "phone": fake.phone_number(),
                "email": f"{user}@{domain}"}

    resources = [
        {"id": "yonyou-support", "kind": "vendor", "name": "用友畅捷通 客户服务（好会计 / T+）",
         "contact": contact("客户经理", "chanjet-support.invalid", "service"), "verify_every_days": 180,
         "last_verified": ago(10, 90), "owner": "it"},
        {"id": "kingdee-support", "kind": "vendor", "name": "金蝶精斗云 技术支持",
         "contact": contact("技术支持工程师", "kingdee-support.invalid", "support"), "verify_every_days": 180,
         "last_verified": ago(10, 90), "owner": "it"},
        {"id": "it-outsourcing", "kind": "it_support", "name": f"{fake.company_prefix()}信息技术有限公司（IT外包运维）",
         "contact": contact("驻场工程师", "it-outsourcing.invalid", "oncall"), "verify_every_days": 90,
         "last_verified": ago(3, 30), "owner": "it"},
        {"id": "law-firm", "kind": "lawyer", "name": f"{fake.company_prefix()}律师事务所（数据合规与劳动争议）",
         "contact": contact("合伙人律师", "lawfirm.invalid", "partner"), "verify_every_days": 180,
         "last_verified": ago(10, 90), "owner": "legal"},
        {"id": "cyber-insurer", "kind": "insurer", "name": f"{fake.company_prefix()}财产保险股份有限公司（网络安全保险）",
         "contact": contact("理赔专员", "insurer.invalid", "claims"), "verify_every_days": 180,
         "last_verified": ago(10, 90), "owner": "owner"},
        {"id": "tax-hotline", "kind": "regulator", "name": "国家税务总局 12366 纳税缴费服务热线",
         "contact": {"phone": "12366"}, "verify_every_days": 365, "last_verified": ago(10, 120), "owner": "duty_lead"},
    ]

    regulations = [
        {"id": rid, "title": title, "issuer": issuer, "effective": effective, "review_every_days": 365,
         "last_reviewed": ago(20, 250), "owner": owner}
        for rid, title, issuer, effective, owner in REGULATIONS]

    # Two drill sessions split the staff, and everyone sits the yearly PIPL and security training.
    people = [p.id for p in ctx.agency.contacts.people]
    types = _emergency_types()
    live_on, tabletop_on, training_on = ago(30, 110), ago(130, 250), ago(20, 200)
    live_type = "ransomware" if "ransomware" in types else (types[0] if types else "")
    tabletop_type = "etax_outage" if "etax_outage" in types else live_type
    shuffled = people[:]
    rng.shuffle(shuffled)
    half = set(shuffled[: len(shuffled) // 2])
    training = []
    for pid in people:
        if pid in half:
            training.append({"person": pid, "on": live_on, "kind": "drill", "topic": f"{live_type} 实战演练"})
        else:
            training.append({"person": pid, "on": tabletop_on, "kind": "tabletop", "topic": f"{tabletop_type} 桌面推演"})
        training.append({"person": pid, "on": training_on, "kind": "training", "topic": "个人信息保护与网络安全意识年度培训"})

    raci = {}
    for etype in types:
        responsible, accountable, consulted, informed = RACI.get(etype, DEFAULT_RACI)
        raci[etype] = {"responsible": responsible, "accountable": accountable, "consulted": consulted,
                       "informed": informed}

    files = {
        "supplies": _header("Emergency supplies: check them every check_every_days; expires = battery, certificate "
                            "or plan end; owner = a person id or role of contacts.yaml", supplies),
        "resources": _header("External resources: who we call from outside; verify each contact every "
                             "verify_every_days (call it, note the date)", resources),
        "regulations": _header("Regulation library: review each against our runbooks every review_every_days",
                               regulations),
        "training": _header("Training and drill participation per person (ids of contacts.yaml); scored drills in "
                            "the register count too", training),
        "raci": _header("RACI per emergency type; departments are the roles of contacts.yaml "
                        "(it 信息技术, accountants 会计部, manager 经理, owner 负责人 …)", raci),
    }
    for register, text in files.items():
        (folder / FILES[register]).write_text(text, encoding="utf-8")
    return {"supplies": len(supplies), "resources": len(resources), "regulations": len(regulations),
            "training": len(training), "raci": len(raci)}
