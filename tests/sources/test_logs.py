from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from ledgerguard.agency import AgencyDataError
from ledgerguard.sources import logs as lg


def test_typed_columns_and_only_those_asked(agency):
    df = lg.read_log(agency, "dlp_log", columns=["user", "rows"])
    assert list(df.columns) == ["at", "user", "rows"]
    assert str(df["at"].dt.tz) == "UTC"
    assert pd.api.types.is_integer_dtype(df["rows"])
    assert df["at"].is_monotonic_increasing and len(df) > 0


def test_naive_timestamps_are_agency_local_time(agency):
    path = agency.data_file(*lg.MAIL_CLICKS)
    path.write_text("at,user,sender,subject,url,verdict,action\n"
                    "2026-11-05T10:00:00,a,s,t,http://x,clean,clicked\n", encoding="utf-8")
    df = lg.read_log(agency, "mail_clicks")
    assert df["at"].iloc[0] == pd.Timestamp("2026-11-05T02:00:00Z")


def test_window_filter(agency):
    path = agency.data_file(*lg.MAIL_CLICKS)
    path.write_text("at,user,sender,subject,url,verdict,action\n"
                    "2026-11-05T10:00:00+08:00,a,s,t,u,clean,clicked\n"
                    "2026-11-06T10:00:00+08:00,b,s,t,u,clean,clicked\n", encoding="utf-8")
    df = lg.read_log(agency, "mail_clicks", since=datetime(2026, 11, 5, 12, tzinfo=timezone.utc))
    assert df["user"].tolist() == ["b"]


def test_bad_timestamp_names_line_and_column(agency):
    path = agency.data_file(*lg.MAIL_CLICKS)
    path.write_text("at,user,sender,subject,url,verdict,action\n"
                    "2026-11-05T10:00:00+08:00,a,s,t,u,clean,clicked\n"
                    "5 Nov,b,s,t,u,clean,clicked\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        lg.read_log(agency, "mail_clicks")
    assert exc.value.field == "at" and "line 3" in str(exc.value) and "'5 Nov'" in str(exc.value)


def test_jsonl_bad_line(agency, tmp_path):
    path = tmp_path / "auth.jsonl"
    path.write_text('{"at": "2026-11-05T10:00:00+08:00", "user": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 2: expected a JSON object"):
        lg.read_log(agency, "auth_log", path=path)


def test_unknown_column_is_a_programming_error(agency):
    with pytest.raises(ValueError, match="no column 'bytes'"):
        lg.read_log(agency, "dlp_log", columns=["bytes"])


def test_staff_and_accounts(agency):
    staff = lg.read_staff(agency)
    left = staff[staff["status"] == "left"]
    assert len(left) == 1 and left["last_day"].iloc[0] is not None
    accounts = lg.read_accounts(agency)
    assert accounts["disabled"].dtype == bool and accounts["disabled"].sum() == 1
    accounts.loc[0, "note"] = "checked"
    lg.write_accounts(agency, accounts)
    assert lg.read_accounts(agency).loc[0, "note"] == "checked"


def test_bad_staff_file(agency):
    path = agency.data_file(*lg.STAFF)
    text = path.read_text(encoding="utf-8").splitlines()
    text[2] = text[2].replace(",active,", ",retired,")
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        lg.read_staff(agency)
    assert exc.value.field == "status" and "line 3" in str(exc.value)


def test_off_hours(agency):
    at = pd.Series(pd.to_datetime(["2026-11-04T23:30:00+08:00", "2026-11-04T10:00:00+08:00",
                                   "2026-11-07T10:00:00+08:00"], utc=True))  # Wed night, Wed day, Saturday
    assert lg.off_hours_mask(at, "20:00-07:00", agency.tz).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        lg.parse_off_hours("late")
