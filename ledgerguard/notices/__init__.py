"""Notices to people outside the agency (issue 7): PIPL Art. 57 notices, client notices, the CAC
report and the police report, drafted from the incident as versioned rows of ``notice_drafts`` and
sent only after a person with an approving role approves that exact version.

``models``   the policy file's schema (catalog/notices/notices.yaml), states, the UI decision form
``service``  which notices an incident needs; versions, approval, rejection, filing (register only)
``drafting`` rendering from the incident and recording the drafts
``sending``  delivery of an approved version through ``send_once``, or "to be filed by hand"
"""
