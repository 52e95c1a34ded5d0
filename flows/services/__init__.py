"""The only code that changes state: views, consumers, admin and commands call these."""

from flows.services.documents import check_dsl, problems_of
from flows.services.flows import (
    create_flow,
    delete_flow,
    flow_of,
    publish_flow,
    slugs_of,
    update_flow,
)
from flows.services.maintenance import prune_audit, prune_runs
from flows.services.runs import (
    answer_run,
    cancel_run,
    request_fingerprint,
    rerun_run,
    retry_run,
    run_of,
    start_run,
    until_settled,
    wait_for_run,
)
from flows.services.snapshots import document_of
from flows.services.tokens import create_token, revoke_token, user_for_key

__all__ = [
    "answer_run",
    "cancel_run",
    "check_dsl",
    "create_flow",
    "create_token",
    "delete_flow",
    "document_of",
    "flow_of",
    "problems_of",
    "prune_audit",
    "prune_runs",
    "publish_flow",
    "request_fingerprint",
    "rerun_run",
    "retry_run",
    "revoke_token",
    "run_of",
    "slugs_of",
    "start_run",
    "until_settled",
    "update_flow",
    "user_for_key",
    "wait_for_run",
]
