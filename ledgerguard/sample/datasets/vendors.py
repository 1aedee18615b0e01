"""Sample vendor register (bookkeeping SaaS, payroll-slip service, e-invoice platform, off-site
backup storage), clients' domains, an empty notices folder and a week of threat-intel entries
that name nobody we work with."""

from __future__ import annotations

import csv
from datetime import timedelta, timezone
from typing import Any

import yaml

from ledgerguard.sources import vendors as src

NAME = "vendors"


def _contact(rng, name: str, domain: str, user: str) -> dict[str, str]:
    phone = f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"
    return {"name": name, "email": f"{user}@{domain}", "phone": phone}


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    now = ctx.now.astimezone(timezone.utc)
    ids = list(agency.client_ids)
    payroll_clients = sorted(rng.sample(ids, max(1, round(len(ids) * 0.4)))) if ids else []
    vendors = [
        {"id": "bookkeeping-saas", "name": "云账房记账平台", "service": "云记账SaaS（账套、凭证、工资表）",
         "domains": ["bookkeeping-saas.invalid"], "data_processed": ["ledgers", "invoices", "name", "salary"],
         "data_subjects": "employees", "clients": "all", "credentials": True,
         "contacts": [_contact(rng, "客户成功经理 周敏", "bookkeeping-saas.invalid", "csm")]},
        {"id": "payroll-cloud", "name": "薪云工资条服务", "service": "电子工资条与个税代扣申报",
         "domains": ["xinyun-payroll.invalid"],
         "data_processed": ["name", "id_number", "bank_card", "salary", "phone"],
         "data_subjects": "employees", "clients": payroll_clients, "credentials": True,
         "contacts": [_contact(rng, "安全负责人 陈刚", "xinyun-payroll.invalid", "security")]},
        {"id": "einvoice", "name": "数电发票服务平台", "service": "发票开具与查验",
         "domains": ["einvoice-platform.invalid"], "data_processed": ["invoices", "name", "phone"],
         "data_subjects": "contacts", "clients": "all", "credentials": True,
         "contacts": [_contact(rng, "技术支持", "einvoice-platform.invalid", "support")]},
        {"id": "offsite-backup", "name": "异地备份云存储", "service": "账套备份异地存储（加密）",
         "domains": ["offsite-backup.invalid"], "data_processed": ["ledgers", "backups"],
         "data_subjects": "none", "clients": "all", "credentials": True,
         "contacts": [_contact(rng, "值班工程师", "offsite-backup.invalid", "noc")]},
    ]
    path = src.register_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Vendor register: who processes which of our clients' data (PIPL Art. 21 entrusted parties)\n"
                    + yaml.safe_dump({"vendors": vendors}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    src.notices_dir(agency).mkdir(parents=True, exist_ok=True)

    with open(agency.data_file(*src.CLIENT_DOMAINS_FILE), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["client_id", "domain"])
        w.writeheader()
        for cid in ids:
            w.writerow({"client_id": cid, "domain": f"{cid.lower()}.clients.invalid"})

    unrelated = [("breach", "shop-example.invalid", "E-commerce customer table for sale", ["name", "phone", "address"]),
                 ("phishing", "secure-login-tax.invalid", "Phishing kit imitating the e-tax login page", []),
                 ("credential_leak", "gamesite.invalid", "Combo list with 2M e-mail/password pairs", ["email"]),
                 ("malware", "update-cdn.invalid", "Loader distributed as a fake invoice viewer", [])]
    feed = [{"at": (now - timedelta(days=rng.uniform(0.5, 6.5))).isoformat(timespec="seconds"),
             "source": "cert-feed", "type": t, "domains": [d], "title": title, "data_kinds": kinds}
            for t, d, title, kinds in unrelated]
    fpath = src.feed_path(agency)
    fpath.write_text("", encoding="utf-8")
    src.append_feed(agency, sorted(feed, key=lambda e: e["at"]))
    return {"vendors": len(vendors), "payroll_clients": len(payroll_clients), "feed_entries": len(feed)}
