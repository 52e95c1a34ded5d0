from django.apps import AppConfig


class TracingConfig(AppConfig):
    name = "tracing"
    verbose_name = "Observability"

    def ready(self) -> None:
        # Every process that loads Django (daphne, manage.py, a worker) configures tracing
        # from OTEL_* once, before the first request builds the middleware chain; with no
        # exporter named it does nothing. The tests clear OTEL_TRACES_EXPORTER (tests/conftest.py)
        # and install a provider of their own where they want spans (tracing.setup.install).
        from tracing.setup import configure_from_env

        configure_from_env()
