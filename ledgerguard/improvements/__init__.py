"""Improvement items: what a drill, the readiness check or a post-mortem found to fix, with an
owner and a due date, tracked until closed (issue 6)."""
