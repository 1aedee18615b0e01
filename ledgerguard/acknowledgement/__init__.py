"""Acknowledgement: a person takes an incident over — from the Prefect UI, the CLI, the intake
API or a one-click link — and the timeline records who, how and when (MTTA comes from it)."""
