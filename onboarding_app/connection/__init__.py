"""The tenant's way in, shared by the wizard and the integration settings (no pages).

`crm` (which CRMs are offered; the fenced connection test), `feeds` (push API and
file uploads, offered beside the CRMs), `credentials` (typed secrets merged with the
saved ones), `oauth` (a CRM's browser sign-in), `imports` (the optional objects) and
`forms` (Provide Details, built from the CRM's spec; the sync frequencies).
"""
