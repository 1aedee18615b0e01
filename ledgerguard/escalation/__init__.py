"""Escalation: per level, a chain of steps (notify roles, wait for an acknowledgement, repeat,
move on) that is frozen into the incident when it is graded, so a config edit never changes an
escalation already running."""
