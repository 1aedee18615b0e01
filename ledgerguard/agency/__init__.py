"""The agency folder: configuration, clients, contacts, filing tracker."""

from ledgerguard.agency.models import (
    DEFAULT_BACKUP_COMMAND,
    Agency,
    AgencyDataError,
    Client,
    FilingRecord,
    UnknownClientError,
    credit_code_check_char,
    is_valid_credit_code,
)
from ledgerguard.channels.contacts import Contacts, Person, Role
from ledgerguard.agency.service import LoadedAgency, load_agency, save_agency_config

__all__ = [
    "DEFAULT_BACKUP_COMMAND", "Agency", "AgencyDataError", "Client", "Contacts", "FilingRecord",
    "LoadedAgency", "Person", "Role", "UnknownClientError", "credit_code_check_char",
    "is_valid_credit_code", "load_agency", "save_agency_config",
]
