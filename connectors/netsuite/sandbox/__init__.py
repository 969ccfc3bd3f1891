"""A local NetSuite account speaking SuiteTalk REST (SuiteQL, record service, TBA, M2M).

`harness.NetSuiteHarness` starts one seeded from the kit's shared deal model; the
pieces: `schema` (tables), `suiteql` (the query subset), `store` (SQLite state in the
account's time zone), `auth`, `records` (the record service's bodies), `server` (HTTP),
and `seed` (the deal model as NetSuite records); the kit serves it.
"""
