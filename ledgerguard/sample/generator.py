"""A realistic, deterministic sample agency: staff, clients, double-entry ledgers, nightly backups,
a filing tracker. Used by the embedded demo, drills and tests.

    from ledgerguard.sample import generate_agency
    agency = generate_agency(Path("/tmp/agency"), clients=200, nights=3, seed=7)
"""

from __future__ import annotations

import csv
import random
import shutil
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from faker import Faker

from ledgerguard.agency.models import CLIENT_COLUMNS, Agency, credit_code_check_char, org_code_check_char
from ledgerguard.agency.service import LoadedAgency, load_agency, save_agency_config
from ledgerguard.backups import run_backup
from ledgerguard.ledgers import VoucherLine, add_vouchers, connect, create_ledger

TZ = "Asia/Shanghai"
BACKUP_HOUR_LOCAL = 2

# (汉字, pinyin) pairs, so staff ids and e-mail addresses read like the names.
SURNAMES = [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
            ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
            ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"),
            ("林", "lin"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
            ("唐", "tang"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"), ("沈", "shen")]
GIVEN_NAMES = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
               ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
               ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"),
               ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("晓燕", "xiaoyan"),
               ("建华", "jianhua"), ("志强", "zhiqiang"), ("婷", "ting"), ("雪", "xue"), ("慧", "hui"),
               ("鹏", "peng"), ("宇", "yu"), ("欣怡", "xinyi"), ("子轩", "zixuan"), ("佳琪", "jiaqi")]

# City → district codes (GB/T 2260) used in 统一社会信用代码 positions 3–8.
CITIES = {
    "上海": ["310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112", "310113", "310115"],
    "杭州": ["330102", "330105", "330106", "330108", "330109", "330110"],
    "深圳": ["440303", "440304", "440305", "440306", "440307", "440309"],
    "成都": ["510104", "510105", "510106", "510107", "510108", "510112"],
    "苏州": ["320505", "320506", "320507", "320508", "320571"],
}
INDUSTRIES = ["科技", "贸易", "餐饮管理", "建筑工程", "文化传媒", "电子商务", "信息技术", "物流",
              "企业管理咨询", "装饰工程", "食品", "机械设备", "服装", "教育咨询", "医疗器械", "广告"]

# Staff: (roles, how many)
STAFF_PLAN: list[list[str]] = [
    ["owner"],
    ["manager", "reviewer"],
    ["duty_lead", "accountants"],
    ["it"],
    ["accountants", "reviewer"],
    ["accountants"], ["accountants"], ["accountants"], ["accountants"], ["accountants"],
    ["hr"],
    ["legal", "data_protection"],
]

TIERS = [("basic", 0.5), ("standard", 0.35), ("premium", 0.15)]
TAXES = ["vat", "surtax", "iit"]  # monthly: 增值税, 附加税费, 个人所得税(代扣代缴); cit quarterly


def _yuan(rng: random.Random, low: int, high: int) -> int:
    """A random amount in cents between low and high yuan, rounded to whole yuan most of the time."""
    cents = rng.randint(low * 100, high * 100)
    return cents - cents % 100 if rng.random() < 0.7 else cents


def _voucher_lines(rng: random.Random, kind: str, vat_rate: int) -> tuple[str, list[VoucherLine]]:
    """One voucher of a common kind; every voucher's debits equal its credits."""
    L = VoucherLine
    if kind == "sale":
        net = _yuan(rng, 2_000, 180_000)
        tax = net * vat_rate // 100
        return "销售商品，开具发票", [L("1122", debit_cents=net + tax, memo="应收货款"),
                                     L("5001", credit_cents=net), L("2221", credit_cents=tax, memo="销项税额")]
    if kind == "receive":
        amt = _yuan(rng, 1_000, 150_000)
        return "收到货款", [L("1002", debit_cents=amt), L("1122", credit_cents=amt)]
    if kind == "purchase":
        amt = _yuan(rng, 1_000, 90_000)
        return "采购原材料", [L("1403", debit_cents=amt), L("2202", credit_cents=amt)]
    if kind == "pay_supplier":
        amt = _yuan(rng, 1_000, 80_000)
        return "支付货款", [L("2202", debit_cents=amt), L("1002", credit_cents=amt)]
    if kind == "cost":
        amt = _yuan(rng, 1_000, 100_000)
        return "结转销售成本", [L("5401", debit_cents=amt), L("1405", credit_cents=amt)]
    if kind == "rent":
        amt = _yuan(rng, 3_000, 30_000)
        return "支付房租", [L("5602", debit_cents=amt, memo="房租"), L("1002", credit_cents=amt)]
    if kind == "accrue_salary":
        amt = _yuan(rng, 8_000, 120_000)
        return "计提工资", [L("5602", debit_cents=amt, memo="工资"), L("2211", credit_cents=amt)]
    if kind == "pay_salary":
        amt = _yuan(rng, 8_000, 120_000)
        iit = amt * rng.randint(1, 4) // 100
        return "发放工资", [L("2211", debit_cents=amt), L("1002", credit_cents=amt - iit),
                            L("2221", credit_cents=iit, memo="代扣个人所得税")]
    if kind == "pay_vat":
        amt = _yuan(rng, 500, 20_000)
        return "缴纳增值税", [L("2221", debit_cents=amt, memo="应交增值税"), L("1002", credit_cents=amt)]
    if kind == "surtax":
        amt = _yuan(rng, 50, 2_000)
        return "计提附加税费", [L("5403", debit_cents=amt), L("2221", credit_cents=amt, memo="城建税及教育费附加")]
    if kind == "petty_cash":
        amt = _yuan(rng, 500, 5_000)
        return "提取备用金", [L("1001", debit_cents=amt), L("1002", credit_cents=amt)]
    if kind == "travel":
        amt = _yuan(rng, 200, 6_000)
        return "报销差旅费", [L("5602", debit_cents=amt, memo="差旅费"), L("1001", credit_cents=amt)]
    if kind == "bank_fee":
        amt = rng.randint(500, 30_000)
        return "支付银行手续费", [L("5603", debit_cents=amt), L("1002", credit_cents=amt)]
    if kind == "depreciation":
        amt = _yuan(rng, 300, 8_000)
        return "计提折旧", [L("5602", debit_cents=amt, memo="折旧费"), L("1602", credit_cents=amt)]
    if kind == "marketing":
        amt = _yuan(rng, 500, 25_000)
        return "支付广告宣传费", [L("5601", debit_cents=amt), L("1002", credit_cents=amt)]
    raise ValueError(kind)


VOUCHER_KINDS = [("sale", 16), ("receive", 14), ("purchase", 9), ("pay_supplier", 9), ("cost", 8),
                 ("rent", 4), ("accrue_salary", 6), ("pay_salary", 6), ("pay_vat", 4), ("surtax", 3),
                 ("petty_cash", 3), ("travel", 6), ("bank_fee", 5), ("depreciation", 4), ("marketing", 3)]


def _make_vouchers(rng: random.Random, start: date, end: date, count: int, preparer: str,
                   vat_rate: int) -> list[tuple[str, str, str, str, list[VoucherLine]]]:
    days = (end - start).days
    dates = sorted(start + timedelta(days=rng.randint(0, days)) for _ in range(count - 1))
    kinds, weights = zip(*VOUCHER_KINDS)
    capital = _yuan(rng, 100_000, 2_000_000)
    drafts = [(start, "收到投资款", [VoucherLine("1002", debit_cents=capital),
                                      VoucherLine("3001", credit_cents=capital, memo="实收资本")])]
    for d in dates:
        summary, lines = _voucher_lines(rng, rng.choices(kinds, weights)[0], vat_rate)
        drafts.append((d, summary, lines))
    out, seq, month = [], 0, None
    for d, summary, lines in drafts:
        if d.month != month:
            month, seq = d.month, 0
        seq += 1
        out.append((f"记-{d.month:02d}-{seq:03d}", d.isoformat(), summary, preparer, lines))
    return out


def _credit_code(rng: random.Random, district: str) -> str:
    body = "".join(str(rng.randint(0, 9)) for _ in range(8))
    first17 = "91" + district + body + org_code_check_char(body)
    return first17 + credit_code_check_char(first17)


def _people(rng: random.Random) -> list[dict[str, Any]]:
    people, used = [], set()
    for roles in STAFF_PLAN:
        while True:
            (s_cn, s_py), (g_cn, g_py) = rng.choice(SURNAMES), rng.choice(GIVEN_NAMES)
            if s_cn + g_cn not in used:
                break
        used.add(s_cn + g_cn)
        pid = f"{s_py}{g_py}"
        n = 2
        while any(p["id"] == pid for p in people):
            pid, n = f"{s_py}{g_py}{n}", n + 1
        people.append({"id": pid, "name": s_cn + g_cn, "roles": list(roles),
                       "email": f"{pid}@agency.example",
                       "phone": f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"})
    return people


def _night_times(now: datetime, nights: int, tz: ZoneInfo) -> list[datetime]:
    """The last ``nights`` 02:00 local times at or before ``now``, oldest first, in UTC."""
    local = now.astimezone(tz)
    newest = datetime.combine(local.date(), time(BACKUP_HOUR_LOCAL), tzinfo=tz)
    if newest > local:
        newest -= timedelta(days=1)
    return [(newest - timedelta(days=i)).astimezone(timezone.utc) for i in reversed(range(nights))]


def _insert(path: Path, vouchers: list) -> None:
    if not vouchers:
        return
    conn = connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        add_vouchers(conn, vouchers)
        conn.commit()
    finally:
        conn.close()


def generate_agency(target: Path, *, clients: int = 200, nights: int = 3, seed: int = 7,
                    now: datetime | None = None, overwrite: bool = False) -> LoadedAgency:
    """Write a complete sample agency into ``target`` and return it loaded.

    Deterministic for a given ``seed`` and ``now``. Ledgers grow night by night: each of the
    ``nights`` backup sets (02:00 Asia/Shanghai on the previous nights) holds the vouchers dated
    before that night; vouchers dated today come after the newest backup.
    """
    target = Path(target)
    if (target / "agency.yaml").exists():
        if not overwrite:
            raise FileExistsError(f"{target} already holds an agency (agency.yaml); pass overwrite=True")
        for sub in ("ledgers", "backups"):
            shutil.rmtree(target / sub, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    now = (now or datetime.now(timezone.utc))
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    tz = ZoneInfo(TZ)
    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)

    city = rng.choice(sorted(CITIES))
    agency_name = f"{city}{fake.company_prefix()}财税代理记账有限公司"
    config = Agency(name=agency_name, timezone=TZ)
    save_agency_config(target, config)

    people = _people(rng)
    accountants = [p for p in people if "accountants" in p["roles"]]
    management = [p["email"] for p in people if {"owner", "manager"} & set(p["roles"])]
    # Drill messages go to one exercise mailbox, not to everyone's phone.
    drill = [f"yanlian@{management[0].split('@', 1)[1]}"] if management else []
    (target / config.contacts_file).write_text(
        yaml.safe_dump({"people": people, "management_list": management, "drill_recipients": drill},
                       allow_unicode=True, sort_keys=False),
        encoding="utf-8")

    rows, names = [], set()
    tiers, tier_weights = zip(*TIERS)
    for i in range(1, clients + 1):
        while True:
            name = f"{city}{fake.company_prefix()}{rng.choice(INDUSTRIES)}有限公司"
            if name not in names:
                break
        names.add(name)
        tier = rng.choices(tiers, tier_weights)[0]
        vip = rng.random() < (0.3 if tier == "premium" else 0.065)
        cid = f"C{i:04d}"
        rows.append({"client_id": cid, "name": name,
                     "credit_code": _credit_code(rng, rng.choice(CITIES[city])), "tier": tier,
                     "vip": vip, "accountant_id": accountants[(i - 1) % len(accountants)]["id"],
                     "legal_rep": fake.name(), "phone": fake.phone_number(),
                     "employees": rng.choice([rng.randint(1, 9), rng.randint(10, 49), rng.randint(50, 200)]),
                     "ledger_file": f"{cid}.sqlite"})
    if rows and not any(r["vip"] for r in rows):
        rows[-1]["vip"] = True  # every sample has at least one VIP client
    with open(target / config.clients_file, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CLIENT_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "vip": "true" if r["vip"] else "false"})

    _write_filing_tracker(target / config.filing_tracker, rows, rng, now.astimezone(tz))

    agency = load_agency(target)
    by_id = {p["id"]: p["name"] for p in people}
    today = now.astimezone(tz).date()
    start = date(today.year, 1, 1)
    pending: dict[str, list] = {}
    for r in rows:
        path = agency.ledger_path(r["client_id"])
        create_ledger(path)
        count = rng.randint(30, 120)
        vat_rate = 3 if r["tier"] == "basic" else rng.choice([3, 6, 13])
        pending[r["client_id"]] = _make_vouchers(rng, start, today, count, by_id[r["accountant_id"]], vat_rate)

    for night in _night_times(now, nights, tz):
        cutoff = night.astimezone(tz).date().isoformat()
        for cid, vouchers in pending.items():
            ready = [v for v in vouchers if v[1] < cutoff]
            _insert(agency.ledger_path(cid), ready)
            pending[cid] = vouchers[len(ready):]
        run_backup(agency, now=night)
    for cid, vouchers in pending.items():
        _insert(agency.ledger_path(cid), vouchers)

    from ledgerguard.sample.datasets import SampleContext, generate_datasets

    generate_datasets(SampleContext(root=target, agency=agency, now=now, seed=seed, people=people))
    return agency


def _write_filing_tracker(path: Path, clients: list[dict[str, Any]], rng: random.Random,
                          local_now: datetime) -> None:
    """Returns for the current filing period (last month), most already filed this month.

    Before the usual deadline (~15th) about 85 % are filed; after it about 97 %."""
    first = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period_end = first - timedelta(days=1)
    period = f"{period_end.year}-{period_end.month:02d}"
    taxes = TAXES + (["cit"] if period_end.month in (3, 6, 9, 12) else [])
    span = max(60, int((local_now - first).total_seconds()))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["client_id", "period", "tax", "status", "filed_at"])
        w.writeheader()
        for c in clients:
            for tax in taxes:
                filed = rng.random() < (0.85 if local_now.day <= 15 else 0.97)
                filed_at = ""
                if filed:
                    filed_at = min(local_now, first + timedelta(seconds=rng.randint(0, span))).isoformat(timespec="seconds")
                w.writerow({"client_id": c["client_id"], "period": period, "tax": tax,
                            "status": "filed" if filed else "unfiled", "filed_at": filed_at})


