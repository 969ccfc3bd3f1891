"""The onboarding domain: telling a new tenant's admin, by e-mail, that its data is in."""

import dagster as dg

from accrue_pipelines.onboarding.sensors import first_data_email_sensor
from accrue_pipelines.platform import definitions as platform_definitions

defs = dg.Definitions.merge(platform_definitions.defs, dg.Definitions(
    sensors=[first_data_email_sensor],
))
