from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows"

    def ready(self) -> None:
        # Every new flow joins the lookup filter (a post_save signal), whoever creates it.
        from flows import lookup  # noqa: F401

        # Services ring the process's executor when a run needs it (flows/services/dispatch.py).
        from flows.execution.executor import executor
        from flows.services import dispatch

        dispatch.use(executor)
        # The metrics read the plan cache's counters; tracing never imports flows.
        from flows.cache import cache_stats
        from tracing import metrics

        metrics.read_cache_stats_from(cache_stats)
