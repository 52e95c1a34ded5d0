"""The admin's index links to the dashboard (autodiscovered with the other apps' admin.py)."""

from django.contrib import admin

admin.site.index_template = "tracing/admin_index.html"
