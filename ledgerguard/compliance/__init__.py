"""The compliance and post-mortem record: Prefect's run history joined with the register.

Prefect keeps events for days and flow runs until a vacuum removes them; accounting archives
must outlive both. `tasks.history` reads the history out of Prefect into the plain models of
:mod:`ledgerguard.compliance.models`; everything here works on those models and the register
and never imports Prefect.
"""
