"""Approvals: a destructive runbook step waits for a person other than the requester (four eyes)."""
