from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
import yaml
from openpyxl import Workbook

from ledgerguard.agency import load_agency
from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.sources import filings as src


def _xlsx(path, header, rows):
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def test_generated_tracker_has_tax_due_and_history(agency):
    path, df = src.load(agency)
    assert path == agency.filing_tracker_path
    assert df["tax_due"].notna().all() and (df["tax_due"] >= 0).all()
    assert df["period"].nunique() >= 2       # current period + history the calendar covers
    # the core loader still reads the file (extra column ignored)
    assert len(agency.filings()) == len(df)


def test_excel_tracker_with_chinese_headers(agency, tmp_path):
    cid = agency.client_ids[0]
    path = _xlsx(tmp_path / "申报跟踪表.xlsx", ["客户编号", "所属期", "税种", "状态", "申报时间", "应纳税额"], [
        [cid, "2026-09", "增值税", "已申报", datetime(2026, 10, 20, 10, 0), 1200.5],
        [cid, "2026年9月", "个税", "未申报", None, " ¥1,300.00 "],
        [None, None, None, None, None, None],
    ])
    df = src.read_tracker(path)
    assert list(df["tax"]) == ["vat", "iit"]
    assert list(df["status"]) == ["filed", "unfiled"]
    assert list(df["period"]) == ["2026-09", "2026-09"]
    # a naive Excel time is Shanghai local time
    assert df["filed_at"][0] == pd.Timestamp(datetime(2026, 10, 20, 10, 0, tzinfo=SHANGHAI))
    assert df["tax_due"].tolist() == [1200.5, 1300.0]
    assert df["row"].tolist() == [2, 3]


def test_agency_can_keep_the_tracker_as_a_workbook(agency):
    cid = agency.client_ids[0]
    _xlsx(agency.root / "filing-tracker.xlsx", ["client_id", "period", "tax", "status", "filed_at", "tax_due"],
          [[cid, "2026-09", "vat", "unfiled", None, 5000]])
    cfg = yaml.safe_load(agency.config_path.read_text(encoding="utf-8"))
    cfg["data_files"] = {**cfg.get("data_files", {}), "filing_tracker": "filing-tracker.xlsx"}
    agency.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    reloaded = load_agency(agency.root)
    path, df = src.load(reloaded)
    assert path.suffix == ".xlsx" and len(df) == 1 and df["status"][0] == "unfiled"


@pytest.mark.parametrize("header,row,column,where", [
    (["客户编号", "所属期", "税种", "状态"], ["C0001", "2026-13", "vat", "filed"], "period", "row 2, column 所属期 (B)"),
    (["client_id", "period", "tax", "status"], ["X1", "2026-09", "vat", "filed"], "client_id", "row 2, column client_id (A)"),
    (["client_id", "period", "tax", "status", "tax_due"], ["C0001", "2026-09", "vat", "unfiled", "abc"],
     "tax_due", "row 2, column tax_due (E)"),
    (["client_id", "period", "tax", "状态"], ["C0001", "2026-09", "vat", "maybe"], "status", "row 2, column 状态 (D)"),
])
def test_bad_workbook_names_file_row_and_column(tmp_path, header, row, column, where):
    path = _xlsx(tmp_path / "t.xlsx", header, [row])
    with pytest.raises(AgencyDataError) as exc:
        src.read_tracker(path)
    assert exc.value.field == column
    assert "t.xlsx" in str(exc.value) and where in str(exc.value)


def test_missing_column_and_unknown_client(agency, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("client_id,period,tax\nC0001,2026-09,vat\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="required column missing") as exc:
        src.read_tracker(path)
    assert exc.value.field == "status"
    path.write_text("client_id,period,tax,status,filed_at\nC0001,2026-09,vat,filed,2026-10-01T10:00:00+08:00\n"
                    "C9999,2026-09,vat,unfiled,\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match=r"row 3, column client_id: unknown client 'C9999'"):
        src.load(agency, params={"tracker_file": str(path)})


def test_csv_with_padding_and_typed_amounts(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("客户编号,所属期,税种,状态,申报时间,应纳税额\n"
                    " C0001 ,2026/9,增值税, 已申报 , 2026-10-20 10:00:00 ,\"1,234.50\"\n", encoding="utf-8")
    df = src.read_tracker(path)
    row = df.iloc[0]
    assert (row.client_id, row.period, row.tax, row.status, row.tax_due) == ("C0001", "2026-09", "vat", "filed", 1234.5)
    assert row.filed_at == pd.Timestamp(datetime(2026, 10, 20, 10, 0, tzinfo=SHANGHAI))


def test_filed_without_time_and_duplicates_are_rejected(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("client_id,period,tax,status,filed_at\nC0001,2026-09,vat,filed,\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="row 2, column filed_at"):
        src.read_tracker(path)
    path.write_text("client_id,period,tax,status\nC0001,2026-09,vat,unfiled\nC0001,2026-09,vat,unfiled\n",
                    encoding="utf-8")
    with pytest.raises(AgencyDataError, match="row 3, column tax"):
        src.read_tracker(path)


def test_late_fee_arithmetic():
    cal = src.calendar_for()
    deadline = src.period_deadline(cal, "2026-09")
    assert deadline.date().isoformat() == "2026-10-26"   # the national calendar's October deadline
    on_day = datetime(2026, 10, 26, 22, 0, tzinfo=SHANGHAI)
    assert src.days_late(deadline, on_day) == 0
    after = datetime(2026, 10, 30, 9, 0, tzinfo=SHANGHAI)
    assert src.days_late(deadline, after) == 4        # 27, 28, 29, 30 October
    assert src.late_fee_yuan(10_000, deadline, after) == 20.0
    with pytest.raises(ValueError, match="filings:<YYYY-MM>"):
        src.period_from_resource("returns:2026-09", datetime.now(timezone.utc), SHANGHAI)
    assert src.period_from_resource("filings:current", datetime(2026, 1, 5, tzinfo=timezone.utc), SHANGHAI) == "2025-12"
