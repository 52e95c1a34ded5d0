# Celery's app is loaded with Django (the usual layout), so that the doorbell and the tasks
# (flows/, through celery.current_app and shared_task) find it without importing astron.
from astron.celery import app as celery_app

__all__ = ("celery_app",)
