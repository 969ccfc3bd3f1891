"""The push API's core (issue 13, F8): credentials, the durable inbox, and its processing.

A tenant fed by push has `crm_type` PUSH_CRM_TYPE, a feed (accrue.sources): its records
arrive at `POST /v1/push/<tenant>/records` (onboarding_app.push), are committed to the
inbox (accrue.push.inbox) before the push is acknowledged, and reach the crm_* tables
through the same sync asset and engine as a CRM's, read back by the push feed's connector
(accrue.push.feed) when the sync sensor sees batches pending; their fields are mapped by
the object's schema (accrue.push.schema). `accrue push process` does the same by hand
(accrue.push.process).
"""

PUSH_CRM_TYPE = "push"
