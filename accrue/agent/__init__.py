"""`accrue-agent`: the script a customer runs on their own server (issue 13, F8).

It reads the customer's CRM database (any SQLAlchemy URL) or a folder of CSV exports,
as a small mapping file says, and pushes the changes since its local checkpoint to the
push API (`POST /v1/push/<tenant>/records`): Accrue never gets access to the customer's
systems, only the records the mapping names.

Modules: `mapping` (the mapping file), `sources` (reading a database or exports as
changes), `checkpoint` (the local state, saved atomically after each acknowledged batch),
`client` (signing, retries, the server's answers), `runner` (one pass), `cli`.
It runs outside Accrue's servers, so it imports neither Dagster nor the Flask app
(a test checks).
"""
