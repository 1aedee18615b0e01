"""Data adapters of the core: one module per data source the detectors read (probe targets and
logs, facility alarms, vendor register, …). Prefect-free; pandas for tabular data, httpx for probes.

Where a data file lives: ``agency.data_file(<name>, <default relative path>)``; bad input raises
:class:`ledgerguard.agency.models.AgencyDataError` naming the file, the line and the field.
"""
