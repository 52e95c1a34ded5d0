"""Load the sample flows for a user `admin`, published, and say where to look.

Running it again changes nothing but the admin's password (printed each time): flows whose
draft already matches their sample are left alone, and publishing an unchanged draft keeps
its version.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from engine import document_digest
from flows import audit, services
from flows.errors import ServiceError
from flows.services.documents import subflow_targets

ADMIN = "admin"
SERVER = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = "Load the sample flows (published) for an admin user `admin` and print its password."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--samples", type=Path, default=Path(settings.BASE_DIR) / "samples",
                            help="folder of flow documents (*.json); the file name is the slug")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit.acting("command"):  # the audit log names this door (actor: the system)
            self._handle(*args, **options)

    def _handle(self, *args: Any, samples: Path, **options: Any) -> None:
        documents = read_samples(samples)
        admin, password, created = self.admin_with_new_password()
        self.stdout.write(f'User "{admin.username}" {"created" if created else "exists"} '
                          "(staff, superuser); its new password:")
        self.stdout.write(f"    {password}")
        self.stdout.write(f"Sample flows of {admin.username}, from {samples}:")
        width = max(len(slug) for slug in documents)
        for slug, dsl in documents.items():
            self.stdout.write(f"    {slug:<{width}}  {self.load(admin, slug, dsl)}")
        self.stdout.write("Open:")
        self.stdout.write(f"    {SERVER}/flows/      (user {admin.username}, the password above)")
        self.stdout.write(f"    {SERVER}/admin/      (the admin, same user)")
        self.stdout.write(f"    {SERVER}/api/docs/   (the API)")

    def admin_with_new_password(self) -> tuple[Any, str, bool]:
        """The admin user, created when missing, with a fresh password (shown once)."""
        password = secrets.token_urlsafe(12)
        users = get_user_model()
        admin = users.objects.filter(username=ADMIN).first()
        if admin is None:
            return users.objects.create_superuser(ADMIN, "", password), password, True
        admin.set_password(password)
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.save(update_fields=["password", "is_staff", "is_superuser", "is_active"])
        return admin, password, False

    def load(self, owner: Any, slug: str, dsl: dict[str, Any]) -> str:
        """Create or update one flow and publish it; what was done, in a few words."""
        try:
            try:
                flow = services.flow_of(owner, slug, include_deleted=True)
            except ServiceError:
                flow, done = services.create_flow(owner, dsl, slug=slug), "created"
            else:
                if flow.is_deleted:
                    return "skipped: a deleted flow keeps this slug"
                if flow.draft_hash == document_digest(dsl):
                    done = "unchanged"
                else:
                    flow, done = services.update_flow(flow, dsl), "draft updated"
            version, published = services.publish_flow(flow)
        except ServiceError as error:
            raise CommandError(f"{slug}: {error.message}: {json.dumps(error.details)}") from error
        return f"{done}, {'published' if published else 'already published'} as v{version.number}"


def read_samples(folder: Path) -> dict[str, dict[str, Any]]:
    """Documents by slug, flows that others call as subflows first (they must exist)."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise CommandError(f"no sample flows (*.json) in {folder}")
    documents: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            documents[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {path}: {error}") from error
    called = set().union(*(subflow_targets(dsl) for dsl in documents.values()))
    return dict(sorted(documents.items(), key=lambda item: (item[0] not in called, item[0])))
