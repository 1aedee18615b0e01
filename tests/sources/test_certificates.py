from __future__ import annotations

import pandas as pd
import pytest

from ledgerguard.agency import AgencyDataError
from ledgerguard.sources import certificates as certs


def test_inventory_typed(agency):
    inv = certs.read_inventory(agency)
    assert set(inv["client_id"]) == set(agency.client_ids)
    assert str(inv["not_after"].dt.tz) == "UTC"
    assert {"税务UKey", "电子营业执照"} <= set(inv["kind"])


def test_date_means_end_of_local_day_and_timestamps_accepted(agency):
    path = certs.inventory_path(agency)
    cid = agency.client_ids[0]
    path.write_text("client_id,kind,serial,not_after,holder\n"
                    f"{cid},税务UKey,AB12,2026-12-01,张三\n"
                    f"{cid},CA证书,CD34,2026-12-01T08:00:00+08:00,张三\n", encoding="utf-8")
    inv = certs.read_inventory(agency)
    assert inv["not_after"].tolist() == [pd.Timestamp("2026-12-01T15:59:59Z"), pd.Timestamp("2026-12-01T00:00:00Z")]
    certs.write_inventory(agency, inv)
    again = certs.read_inventory(agency)
    assert again["not_after"].tolist() == inv["not_after"].tolist()


def test_missing_column_and_file(agency):
    path = certs.inventory_path(agency)
    path.write_text("client_id,kind,serial\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        certs.read_inventory(agency)
    assert exc.value.field == "not_after"
    path.unlink()
    with pytest.raises(AgencyDataError, match="file not found"):
        certs.read_inventory(agency)
