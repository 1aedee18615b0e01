"""On call: the roster (rotations per role, overrides, quiet hours) and who is on call when.

Prefect-free; see :mod:`ledgerguard.oncall.models` for the file and
:mod:`ledgerguard.oncall.service` for the questions it answers.
"""

from ledgerguard.oncall.models import Override, QuietHours, Roster, Rotation
from ledgerguard.oncall.service import (
    DEFAULT_ROSTER_FILE,
    RosterError,
    Shift,
    delivery_time,
    is_quiet,
    is_working_day,
    load_roster,
    next_handover,
    on_call,
    on_call_id,
    parse_roster,
    roster_tz,
    schedule,
    shift_at,
)

__all__ = [
    "DEFAULT_ROSTER_FILE", "Override", "QuietHours", "Roster", "RosterError", "Rotation", "Shift",
    "delivery_time", "is_quiet", "is_working_day", "load_roster", "next_handover", "on_call", "on_call_id",
    "parse_roster", "roster_tz", "schedule", "shift_at",
]
