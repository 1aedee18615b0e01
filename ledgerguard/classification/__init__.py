"""Classification: impact × urgency → priority → level, regulatory grade, obligations, SLA."""

from ledgerguard.classification.service import assess, classify, enrich_facts, obligations_for, sla_targets

__all__ = ["assess", "classify", "enrich_facts", "obligations_for", "sla_targets"]
