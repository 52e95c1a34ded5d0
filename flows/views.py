import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from flows.errors import error_body

logger = logging.getLogger(__name__)


@require_safe
@never_cache
def healthz(request):
    """The process lives."""
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request):
    """The process can serve: the database answers, and Redis and the broker too when they
    are configured (REDIS_URL, RUN_EXECUTOR=celery)."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        logger.warning("readyz: database unavailable", exc_info=True)
        return _not_ready(f"The database does not answer ({type(error).__name__}).")
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        try:
            get_redis_connection("default").ping()
        except Exception as error:
            logger.warning("readyz: redis unavailable", exc_info=True)
            return _not_ready(f"Redis does not answer ({type(error).__name__}).")
    if settings.RUN_EXECUTOR == "celery":
        from flows.execution.doorbell import check_broker

        try:
            check_broker()
        except Exception as error:
            logger.warning("readyz: broker unavailable", exc_info=True)
            return _not_ready(f"The broker does not answer ({type(error).__name__}); runs "
                              "started now wait until it does.")
    return JsonResponse({"status": "ok"})


def _not_ready(message: str) -> JsonResponse:
    body = error_body("not_ready", message)
    return JsonResponse(body, status=503)
