"""Forms of the admin's own pages. They check what they can; services decide the rest."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from flows import services
from flows.admin.display import problem_line
from flows.errors import ServiceError
from flows.jsontext import InvalidJSON, strict_json_loads
from flows.models import Flow

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # the API's body limit (docs/api.md)
JSON_WIDGET = forms.Textarea(attrs={"rows": 24, "cols": 100, "spellcheck": "false",
                                    "style": "font-family: monospace"})


class PrettyJSONField(forms.JSONField):
    """A JSON field edited as indented text, so that a flow document stays readable."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


def problems_error(error: ServiceError) -> forms.ValidationError:
    """A refused document or inputs as form errors: one line per problem."""
    if not error.details:
        return forms.ValidationError(error.message, code=error.code)
    return forms.ValidationError([forms.ValidationError(problem_line(p), code=error.code)
                                  for p in error.details])


def user_named(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise forms.ValidationError(f'there is no user "{username}"', code="unknown_user")
    return user


class FlowDraftForm(forms.ModelForm):
    """The change form of a flow: the draft (checked like the API does) and its limit of
    runs at once are editable."""

    # Not "required": Django would call {} empty; the DSL check says what is missing instead.
    draft = PrettyJSONField(widget=JSON_WIDGET, required=False,
                            help_text="The flow document (DSL). Saving checks it first; "
                                      "name and description come from it.")

    max_active_runs = forms.IntegerField(
        required=False, min_value=1, max_value=10_000, label="Runs at once",
        help_text="At most this many of the flow's runs execute at once; the others wait "
                  "queued. Empty: no limit of its own (the owner's limit still holds).")

    class Meta:
        model = Flow
        fields = ["draft", "max_active_runs"]

    def clean_draft(self) -> Any:
        dsl = self.cleaned_data["draft"]
        try:
            services.check_dsl(self.instance.owner, dsl, self.instance.slug)
        except ServiceError as error:
            raise problems_error(error) from error
        return dsl


class ImportForm(forms.Form):
    file = forms.FileField(label="DSL file", help_text="A flow document (.json).")
    owner = forms.CharField(max_length=150, help_text="The username the flow belongs to.")
    slug = forms.CharField(max_length=63, required=False,
                           help_text="Leave empty to make one from the flow's name.")

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_DOCUMENT_BYTES:
            raise forms.ValidationError("the file is over 2 MiB", code="too_large")
        try:
            return strict_json_loads(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, InvalidJSON) as error:
            raise forms.ValidationError(f"the file is not JSON: {error}",
                                        code="invalid_json") from error

    def clean_owner(self) -> Any:
        return user_named(self.cleaned_data["owner"])

    def clean_slug(self) -> str | None:
        return self.cleaned_data["slug"] or None


class RunForm(forms.Form):
    inputs = PrettyJSONField(widget=forms.Textarea(attrs={"rows": 12, "cols": 80,
                                                          "style": "font-family: monospace"}),
                             initial=dict, required=False,
                             help_text="A JSON object: the start node's inputs.")
    version = forms.ChoiceField(choices=[("published", "published"), ("draft", "draft")])

    def __init__(self, *args: Any, flow: Flow, **kwargs: Any):
        super().__init__(*args, **kwargs)
        published = flow.published_version
        self.fields["version"].choices = [
            ("published", f"published (v{published})" if published else "published (none)"),
            ("draft", "draft"),
        ]
        self.fields["version"].initial = "published" if published else "draft"

    def clean_inputs(self) -> Any:
        inputs = self.cleaned_data["inputs"]
        if inputs is None:  # an empty box
            return {}
        if not isinstance(inputs, dict):
            raise forms.ValidationError("the inputs must be a JSON object", code="invalid_inputs")
        return inputs


class TokenForm(forms.Form):
    user = forms.CharField(max_length=150, help_text="The username the token acts for.")
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “CI”.")
    expires_days = forms.IntegerField(min_value=1, max_value=3650, required=False,
                                      help_text="Leave empty for a token that does not expire.")

    def clean_user(self) -> Any:
        return user_named(self.cleaned_data["user"])
