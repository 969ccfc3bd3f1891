"""The Celery app of Accrue's worker machines (dagster-celery's run launcher deployment).

The daemon's CeleryRunLauncher (deploy/dagster/celery.yaml) puts each run on a Celery
queue named by its `dagster-celery/queue` tag: `crm-<crm>` for a tenant's sync (so a
CRM that is slow or rate-limited only holds back the workers of its own queue) and
`analytics` for everything else. A worker executes whole runs in its pool processes,
which keep the code location loaded from one run to the next.

Start a worker (same DAGSTER_HOME, ACCRUE_DATABASE_URL and ACCRUE_SECRET_KEYS as the
daemon):

    celery -A accrue_pipelines.platform.celery_app worker -Q crm-salesforce,analytics -c 2

Broker and result backend come from ACCRUE_CELERY_BROKER_URL (RabbitMQ) and
ACCRUE_CELERY_RESULT_BACKEND (Redis); the daemon's launcher reads the same variables.
"""

from __future__ import annotations

import os

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

from accrue_pipelines.platform import run_tags

BROKER_ENV = "ACCRUE_CELERY_BROKER_URL"
BACKEND_ENV = "ACCRUE_CELERY_RESULT_BACKEND"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/0"

# Settings the daemon's launcher must share (deploy/dagster/celery.yaml, config_source).
CELERY_SETTINGS = {
    # One run per pool process at a time: a run is long, prefetching would starve others.
    "worker_prefetch_multiplier": 1,
    # The result records which worker and queue ran each run (run monitoring, debugging).
    "result_extended": True,
    # A run's result (its exit code) is read by run monitoring within minutes.
    "result_expires": 86_400,
    "broker_connection_retry_on_startup": True,
}

app = make_app({
    "broker": os.environ.get(BROKER_ENV, DEFAULT_BROKER),
    "backend": os.environ.get(BACKEND_ENV, DEFAULT_BACKEND),
    "include": [],
    "config_source": CELERY_SETTINGS,
    "task_default_queue": run_tags.ANALYTICS_QUEUE,
})

execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
