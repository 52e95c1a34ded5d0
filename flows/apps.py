from django.apps import AppConfig
from django.conf import settings


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows"

    def ready(self) -> None:
        # Every new flow joins the lookup filter (a post_save signal), whoever creates it.
        from flows import lookup  # noqa: F401
        from flows.services import dispatch

        # Services ring the process's executor when a run needs it (flows/services/dispatch.py);
        # with RUN_EXECUTOR=celery, the broker, and a worker's executor takes the run (a
        # Celery worker registers its executor as it starts: flows/execution/worker.py).
        if settings.RUN_EXECUTOR == "celery":
            from flows.execution.doorbell import doorbell

            dispatch.use(doorbell)
        else:
            from flows.execution.executor import executor

            dispatch.use(executor)
        # The metrics read the plan cache's counters and the workers' rows; tracing never
        # imports flows.
        from flows.cache import cache_stats
        from flows.worker_metrics import WorkerCollector
        from tracing import metrics

        metrics.read_cache_stats_from(cache_stats)
        if not getattr(metrics.REGISTRY, "_astron_workers", False):
            metrics.REGISTRY.register(WorkerCollector())
            metrics.REGISTRY._astron_workers = True  # ready() may run twice in tests
