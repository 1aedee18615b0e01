"""Readiness registers: emergency supplies, external resources, the regulation library, training
and drill participation, and the RACI of departments per emergency type (issue 6)."""
