"""The start-a-run form, generated from the start node's `params.inputs` (docs/dsl.md §5.1).

One field per declared input: `string` → text input, `integer`/`number` → number input,
`boolean` → checkbox, `object`/`array`/`any` → a JSON text area. A field left empty is not
sent, so the input takes its default (or is reported missing when it is required). Types are
judged by `services.start_run`, which reports each problem by input; the form only turns
text into JSON values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms

from flows.jsontext import InvalidJSON, strict_json_loads

INTEGER = re.compile(r"^[+-]?\d+$")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
JSON_TYPES = ("object", "array", "any")
PREFIX = "input"


def start_inputs(dsl: Any) -> dict[str, dict[str, Any]]:
    """The inputs a document's start node declares (name → spec), in document order."""
    for node in dsl.get("nodes", []) if isinstance(dsl, dict) else []:
        if isinstance(node, dict) and node.get("type") == "start":
            params = node.get("params")
            inputs = params.get("inputs") if isinstance(params, dict) else None
            return inputs if isinstance(inputs, dict) else {}
    return {}


def type_label(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "any")
    items = spec.get("items")
    if kind == "array" and isinstance(items, dict) and items.get("type"):
        return f"array of {items['type']}"
    return kind


class InputsForm(forms.Form):
    """The run's inputs; `inputs()` gives the JSON object for `start_run`."""

    def __init__(self, *args: Any, specs: dict[str, dict[str, Any]], **kwargs: Any):
        kwargs.setdefault("prefix", PREFIX)
        super().__init__(*args, **kwargs)
        self.specs = specs
        for name, spec in specs.items():
            self.fields[name] = input_field(name, spec)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name, spec in self.specs.items():
            if name in self.errors or spec.get("type") == "boolean":
                continue
            if spec.get("required") and data.get(name) is EMPTY:
                self.add_error(name, f'the input "{name}" is required')
        return data

    def inputs(self) -> dict[str, Any]:
        return {name: value for name, value in self.cleaned_data.items() if value is not EMPTY}

    def add_problems(self, problems: list[dict[str, Any]]) -> None:
        """Put each problem of `invalid_inputs` (path `/<input>`) next to its field."""
        for problem in problems:
            name = str(problem.get("path") or "").lstrip("/").split("/", 1)[0]
            self.add_error(name if name in self.fields else None, problem.get("message"))


class _Empty:
    """A field left empty: the input is not sent."""

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY = _Empty()


def input_field(name: str, spec: dict[str, Any]) -> forms.Field:
    kind = spec.get("type", "any")
    required = bool(spec.get("required"))
    default = spec.get("default")
    common = {"label": name, "required": False, "help_text": spec.get("description", "")}
    attrs = {"required": True, "aria-required": "true"} if required else {}
    if kind == "boolean":
        return forms.BooleanField(initial=default is True, **common)
    if kind in ("integer", "number"):
        step = "1" if kind == "integer" else "any"
        return NumberField(kind, initial=default,
                           widget=forms.NumberInput(attrs={**attrs, "step": step}), **common)
    if kind == "string":
        return TextField(initial=default, widget=forms.TextInput(attrs=attrs), **common)
    return JSONTextField(initial=None if default is None else json.dumps(default, indent=2),
                         widget=forms.Textarea(attrs={**attrs, "rows": 4, "spellcheck": "false",
                                                      "class": "json"}), **common)


class TextField(forms.CharField):
    def __init__(self, **kwargs: Any):
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> Any:
        return EMPTY if value in (None, "") else super().clean(value)


class NumberField(forms.Field):
    def __init__(self, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.kind = kind

    def clean(self, value: Any) -> Any:
        text = (value or "").strip()
        if not text:
            return EMPTY
        if self.kind == "integer":
            if not INTEGER.match(text):
                raise forms.ValidationError("must be a whole number", code="wrong_type")
            return int(text)
        if not NUMBER.match(text):
            raise forms.ValidationError("must be a number", code="wrong_type")
        return int(text) if INTEGER.match(text) else float(text)


class JSONTextField(forms.CharField):
    def __init__(self, **kwargs: Any):
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> Any:
        if value is None or not value.strip():
            return EMPTY
        try:
            return strict_json_loads(value)
        except InvalidJSON as error:
            raise forms.ValidationError(f'{error}; a text goes in double quotes: "like this"',
                                        code="wrong_type") from error


class VersionForm(forms.Form):
    """Which snapshot runs: the published version (when there is one) or the draft."""

    version = forms.ChoiceField(choices=[("draft", "draft")])

    def __init__(self, *args: Any, published: int | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        choices = [("draft", "draft")]
        if published is not None:
            choices.insert(0, ("published", f"published (v{published})"))
        self.fields["version"].choices = choices
        self.fields["version"].initial = choices[0][0]


class ScheduleForm(forms.Form):
    """A new schedule on the flow page; `services.schedules` judges the values."""

    cron = forms.CharField(max_length=200, help_text="minute hour day month weekday, e.g. "
                           "0 9 * * MON-FRI")
    timezone = forms.CharField(max_length=64, initial="UTC",
                               help_text="An IANA name such as Europe/Paris")
    inputs = forms.CharField(required=False, initial="{}", widget=forms.Textarea(
        attrs={"rows": 3, "spellcheck": "false"}), help_text="The runs' inputs, as JSON")
    version = forms.ChoiceField(choices=[("published", "the published version"),
                                         ("draft", "the draft")])

    def clean_inputs(self) -> Any:
        text = self.cleaned_data["inputs"].strip() or "{}"
        try:
            return strict_json_loads(text)
        except InvalidJSON as error:
            raise forms.ValidationError(f"not valid JSON: {error}") from error

    def add_service_error(self, error: Any) -> None:
        """A refusal of the service, on the field it names."""
        fields = {"/cron": "cron", "/timezone": "timezone", "/version": "version"}
        path = (error.details[0].get("path") if error.details else None) or ""
        field = "inputs" if error.code == "invalid_inputs" else fields.get(path)
        self.add_error(field, error.message)
