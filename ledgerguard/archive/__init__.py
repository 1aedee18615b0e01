"""The compliance archive: export and offline verification (issue 7)."""
