"""Helpers shared by test folders (not tests themselves)."""
