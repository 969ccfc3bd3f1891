"""What every domain runs on, defined once: the resources and the executor.

Each domain's definitions merge these, so a domain loads by itself (a test, a tool) and
the merge of every domain (accrue_pipelines/definitions.py) finds the very same objects:
Dagster refuses two different resources under one key.
"""

import dagster as dg

from accrue_pipelines.platform.resources import pipeline_resources

defs = dg.Definitions(
    resources=pipeline_resources(),  # the warehouse of ACCRUE_DATABASE_URL
    # Every run is one process: see accrue_pipelines/sync/jobs.py.
    executor=dg.in_process_executor,
)
