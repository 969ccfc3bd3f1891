"""The push API's core (issue 13, F8): credentials, the durable inbox, and its processing.

A tenant fed by push has `crm_type` PUSH_CRM_TYPE: no connector reads it, so the
scheduled CRM sync skips it; its records arrive at `POST /v1/push/<tenant>/records`
(onboarding_app.push), are committed to the inbox (accrue.push.inbox) before the push
is acknowledged, and reach the crm_* tables through `Warehouse.apply`
(accrue.push.process).
"""

PUSH_CRM_TYPE = "push"
