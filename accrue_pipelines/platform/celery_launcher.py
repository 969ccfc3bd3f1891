"""dagster-celery's run launcher, with resuming a run fixed.

In dagster-celery 0.29, `CeleryRunLauncher.resume_run` calls the resume task with the
execute task's keyword (`execute_job_args_packed`), which Celery rejects before
sending (TypeError). Run monitoring then marks the run failed instead of resuming it
on another worker, so a worker machine that dies mid-sync costs a whole new run.
This subclass sends the keyword the resume task takes; everything else is upstream's.
deploy/dagster/celery.yaml names this class; the workers need nothing different.
"""

from __future__ import annotations

from dagster import _check as check
from dagster._core.launcher import ResumeRunContext
from dagster._grpc.types import ResumeRunArgs
from dagster._serdes import pack_value
from dagster_celery.config import TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tasks import create_resume_job_task


class ResumableCeleryRunLauncher(CeleryRunLauncher):
    """CeleryRunLauncher whose resume_run works (see the module docstring)."""

    def resume_run(self, context: ResumeRunContext) -> None:
        run = context.dagster_run
        args = ResumeRunArgs(
            job_origin=check.not_none(run.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        task = create_resume_job_task(self.celery)
        self._launch_celery_task_run(
            run=run,
            task_signature=task.si(resume_job_args_packed=pack_value(args)),
            routing_key=TASK_RESUME_JOB_NAME,
        )
