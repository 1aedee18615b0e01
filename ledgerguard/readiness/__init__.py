"""Readiness registers: emergency supplies, external resources, the regulation library, training
and drill participation, and the RACI of departments per emergency type; staff check-ins after
一级/二级 incidents; the on-call load (issue 6)."""
