"""The serving process's heap, settled once the application is loaded."""

import gc

from django.urls import get_resolver


def freeze_loaded_objects() -> None:
    """Load the views, then move everything loaded so far out of the collector's sight.

    Django, DRF, the URL resolver, the models and the views are hundreds of thousands of
    long-lived objects; every full collection walked them all again (100-200 ms in a loaded
    process: the p99 of list requests, docs/benchmarks.md). Frozen objects are never
    collected, which costs nothing here because they live as long as the process. The
    URLconf is loaded first because Django would import it, and the views, only on the
    first request.
    """
    get_resolver().url_patterns  # noqa: B018 - imports every view module
    gc.collect()
    gc.freeze()
