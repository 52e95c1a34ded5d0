"""The admin of Astron: staff see every owner's flows, runs and tokens.

It changes nothing by itself: creating, editing, publishing, running, cancelling and tokens
all go through `flows.services`, like the API. Secrets' values are write-only.
"""

from django.contrib import admin

from flows.admin import audit, flows, runs, schedules, secrets, tokens, webhooks, workers

admin.site.site_header = "Astron"
admin.site.site_title = "Astron admin"
admin.site.index_title = "Administration"

__all__ = ["audit", "flows", "runs", "schedules", "secrets", "tokens", "webhooks", "workers"]
