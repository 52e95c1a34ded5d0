import os

from django.apps import AppConfig


class TracingConfig(AppConfig):
    name = "tracing"
    verbose_name = "Observability"

    def ready(self) -> None:
        # Every process that loads Django (daphne, manage.py, a worker) configures tracing
        # from OTEL_* once, before the first request builds the middleware chain. Never under
        # pytest (it sets PYTEST_VERSION): tests that want spans install a provider of their
        # own (tracing.setup.install).
        if "PYTEST_VERSION" not in os.environ:
            from tracing.setup import configure_from_env

            configure_from_env()
