"""Drills (应急演练): the real flow on a sandbox copy of the agency, measured and scored (issue 6)."""
