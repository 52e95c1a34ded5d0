"""The Celery app of the scaled-out mode (`RUN_EXECUTOR=celery`, docs/scaling.md).

    celery -A astron worker          # from the project root, with the serving processes' env

A message is only a doorbell: `(run id, reason)`, telling a worker to look at the run. The
database row and its lease are the truth about the run, so a doubled message is dropped by
the lease's claim and a lost one is found by the workers' sweep (flows/execution/worker.py).
Its settings are Django's `CELERY_*` (astron/settings.py); the task, and what a worker does
as it starts and stops, are in flows/tasks.py.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")

app = Celery("astron")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["flows"])

