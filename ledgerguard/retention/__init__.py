"""Retention periods (保管期限) of incident records and the purge that refuses what is still inside them.

Import the parts from ``ledgerguard.retention.models`` and ``ledgerguard.retention.service``; this
package imports nothing itself, because the catalog loader imports the models while it loads.
"""
