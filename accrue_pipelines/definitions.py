"""The Dagster code location: every domain's definitions, merged.

Each domain (sync, analytics, onboarding, ops) defines its own assets, checks, jobs and
sensors in its package's definitions.py, on the resources and executor of
accrue_pipelines/platform/definitions.py; this module only merges them.

Loading it must stay cheap (target ≤ 5 s on a busy 2-core machine): the webserver,
the daemon and every run load it. Heavy libraries are imported inside the assets
that use them, never at module level.
"""

import dagster as dg

from accrue_pipelines.analytics import definitions as analytics
from accrue_pipelines.onboarding import definitions as onboarding
from accrue_pipelines.ops import definitions as ops
from accrue_pipelines.sync import definitions as sync

# Modules, not their `defs`: Dagster loads the one Definitions object at module scope.
defs = dg.Definitions.merge(sync.defs, analytics.defs, onboarding.defs, ops.defs)
