"""A small declarative language for the shape of DSL values.

One definition serves three purposes: checking a document (problems with JSON Pointer paths),
compiling params (templates and value expressions parsed once) and publishing a JSON Schema.
Field kinds say which error code each kind of mistake gets (docs/dsl.md §2, §7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Problem
from engine.expressions import Expression, Literal, expression_from_data
from engine.references import ParsedReference, ReferenceSyntaxError, parse_template
from engine.values import TYPE_NAMES, is_integer, is_number, type_name_of

ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
RESERVED_IDS = frozenset({"sys", "item", "index"})


def pointer(path: str, key: str | int) -> str:
    """Extend a JSON Pointer by one step, escaping `~` and `/` (RFC 6901)."""
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


@dataclass
class ReferenceSite:
    """A string that may hold references, found while checking: validated against the graph later."""

    path: str
    parts: list[str | ParsedReference]
    template: bool  # templates see the node's own input names


class Checker:
    """Collects problems and reference sites while a document is walked."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.sites: list[ReferenceSite] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.problems.append(Problem(path, code, message))


class Field:
    """Base of all field kinds. `check` reports problems; `schema` describes the JSON shape."""

    description: str = ""

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        """Report problems of `value`; return False when it is too broken to look inside."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def compile(self, value: Any, compiler: Any) -> Any:
        """Turn a checked value into its run-time form (templates and expressions parsed)."""
        return value

    def encode(self, compiled: Any) -> Any:
        """Plain JSON data for a compiled value (plans are cached without pickle)."""
        return compiled

    def decode(self, data: Any) -> Any:
        return data

    def wrong_type(self, value: Any, path: str, checker: Checker, expected: str) -> bool:
        checker.add(path, "wrong_type", f"must be {expected}, not {type_name_of(value)}")
        return False


@dataclass
class Str(Field):
    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None
    pattern_code: str = "invalid_value"
    pattern_message: str = ""
    enum: tuple[str, ...] | None = None
    forbidden: frozenset[str] = frozenset()
    forbidden_code: str = "invalid_value"

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, str):
            return self.wrong_type(value, path, checker, "a string")
        if len(value) < self.min_length:
            checker.add(path, "invalid_value", f"must have at least {self.min_length} characters")
        elif self.max_length is not None and len(value) > self.max_length:
            checker.add(path, "invalid_value", f"must have at most {self.max_length} characters")
        elif self.enum is not None and value not in self.enum:
            code = "invalid_param" if in_params else "invalid_value"
            options = ", ".join(f'"{e}"' for e in self.enum)
            checker.add(path, code, f'"{value[:100]}" is not one of {options}')
        elif self.pattern is not None and not re.fullmatch(self.pattern, value):
            checker.add(path, self.pattern_code,
                        self.pattern_message or f'"{value[:100]}" does not match {self.pattern}')
        elif value in self.forbidden:
            checker.add(path, self.forbidden_code, f'"{value}" is reserved')
        return True

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern:
            out["pattern"] = self.pattern
        if self.forbidden:
            out["not"] = {"enum": sorted(self.forbidden)}
        return _described(out, self.description)


@dataclass
class Num(Field):
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    integer: bool = False

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if self.integer and not is_integer(value):
            return self.wrong_type(value, path, checker, "an integer")
        if not is_number(value):
            return self.wrong_type(value, path, checker, "a number")
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.exclusive_minimum else value < low)
        if too_low or (high is not None and value > high):
            checker.add(path, "invalid_value", f"{value} is out of range ({self.range_text()})")
        return True

    def range_text(self) -> str:
        low = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return ", ".join(x for x in (low, high) if x)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.minimum is not None:
            out["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return _described(out, self.description)


def Int(minimum: int | None = None, maximum: int | None = None, description: str = "") -> Num:
    num = Num(minimum, maximum, integer=True)
    num.description = description
    return num


@dataclass
class Bool(Field):
    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, bool):
            return self.wrong_type(value, path, checker, "true or false")
        return True

    def schema(self) -> dict[str, Any]:
        return _described({"type": "boolean"}, self.description)


@dataclass
class AnyJson(Field):
    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        return True

    def schema(self) -> dict[str, Any]:
        return _described({}, self.description)


@dataclass
class ValueExpression(Field):
    """Any JSON value; its strings may hold references (docs/dsl.md §3)."""

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        collect_references(value, path, checker, template=False)
        return True

    def schema(self) -> dict[str, Any]:
        return _described({}, self.description or "a value expression (docs/dsl.md §3)")

    def compile(self, value: Any, compiler: Any) -> Expression:
        return compiler.expression(value)

    def encode(self, compiled: Any) -> Any:
        return compiled.to_data()

    def decode(self, data: Any) -> Any:
        return expression_from_data(data)


@dataclass
class Template(Field):
    """Text with references, always rendered to a string."""

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, str):
            return self.wrong_type(value, path, checker, "a string (a template)")
        _collect_site(value, path, checker, template=True)
        return True

    def schema(self) -> dict[str, Any]:
        return _described({"type": "string"}, self.description or "a template (docs/dsl.md §3)")

    def compile(self, value: Any, compiler: Any) -> Expression:
        return compiler.template(value)

    def encode(self, compiled: Any) -> Any:
        return compiled.to_data()

    def decode(self, data: Any) -> Any:
        return expression_from_data(data)


@dataclass
class NumberOrReference(Field):
    """A number in range, or one whole reference to a number checked when the node starts."""

    minimum: float = 0
    maximum: float = 86400

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if isinstance(value, str):
            try:
                parts = parse_template(value)
            except ReferenceSyntaxError as error:
                checker.add(path, "bad_reference", str(error))
                return False
            if len(parts) != 1 or not isinstance(parts[0], ParsedReference) \
                    or value.strip() != value:
                checker.add(path, "invalid_param", "must be a number or one whole reference")
                return False
            checker.sites.append(ReferenceSite(path, parts, template=False))
            return True
        return Num(self.minimum, self.maximum).check(value, path, checker, in_params)

    def schema(self) -> dict[str, Any]:
        return _described({"anyOf": [{"type": "number", "minimum": self.minimum,
                                      "maximum": self.maximum},
                                     {"type": "string", "pattern": r"^\{\{.*\}\}$"}]},
                          self.description)

    def compile(self, value: Any, compiler: Any) -> Expression:
        return compiler.expression(value) if isinstance(value, str) else Literal(value)

    def encode(self, compiled: Any) -> Any:
        return compiled.to_data()

    def decode(self, data: Any) -> Any:
        return expression_from_data(data)


@dataclass
class Arr(Field):
    items: Field = field(default_factory=AnyJson)
    min_items: int = 0

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, list):
            return self.wrong_type(value, path, checker, "an array")
        if len(value) < self.min_items:
            checker.add(path, "invalid_value", f"must have at least {self.min_items} items")
        for index, item in enumerate(value):
            self.items.check(item, pointer(path, index), checker, in_params)
        return True

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        return _described(out, self.description)

    def compile(self, value: Any, compiler: Any) -> Any:
        return [self.items.compile(item, compiler) for item in value]

    def encode(self, compiled: Any) -> Any:
        return [self.items.encode(item) for item in compiled]

    def decode(self, data: Any) -> Any:
        return [self.items.decode(item) for item in data]


@dataclass
class Obj(Field):
    """An object with known keys (`fields`), or a map whose values all follow `values`."""

    fields: dict[str, Field] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    values: Field | None = None
    key_pattern: str | None = None
    key_code: str = "bad_id"

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, dict):
            return self.wrong_type(value, path, checker, "an object")
        for name in self.required:
            if name not in value:
                checker.add(pointer(path, name), "missing_field", f'"{name}" is required')
        for key, item in value.items():
            item_path = pointer(path, key)
            if self.values is not None:
                if self.key_pattern and not re.fullmatch(self.key_pattern, key):
                    checker.add(item_path, self.key_code, f'"{key[:100]}" does not match {self.key_pattern}')
                    continue
                self.values.check(item, item_path, checker, in_params)
            elif key in self.fields:
                self.fields[key].check(item, item_path, checker, in_params)
            else:
                checker.add(item_path, "unknown_field", f'unknown field "{key[:100]}"')
        return True

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if self.values is not None:
            out["additionalProperties"] = self.values.schema()
            if self.key_pattern:
                out["propertyNames"] = {"pattern": self.key_pattern}
        else:
            out["properties"] = {k: f.schema() for k, f in self.fields.items()}
            out["additionalProperties"] = False
        if self.required:
            out["required"] = list(self.required)
        return _described(out, self.description)

    def field_for(self, key: str) -> Field:
        return self.values if self.values is not None else self.fields[key]

    def compile(self, value: Any, compiler: Any) -> Any:
        return {key: self.field_for(key).compile(item, compiler) for key, item in value.items()}

    def encode(self, compiled: Any) -> Any:
        return {key: self.field_for(key).encode(item) for key, item in compiled.items()}

    def decode(self, data: Any) -> Any:
        return {key: self.field_for(key).decode(item) for key, item in data.items()}


@dataclass
class TypeSpec(Field):
    """An output or input type: `{"type": T, "items": {...}, "description": "…"}`."""

    extra: dict[str, Field] = field(default_factory=dict)

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, dict):
            return self.wrong_type(value, path, checker, 'an object like {"type": "string"}')
        if "type" not in value:
            checker.add(pointer(path, "type"), "missing_field", '"type" is required')
            return False
        ok = True
        for key, item in value.items():
            item_path = pointer(path, key)
            if key == "type":
                if not isinstance(item, str):
                    ok = self.wrong_type(item, item_path, checker, "a string")
                elif item not in TYPE_NAMES:
                    checker.add(item_path, "invalid_value",
                                f'"{item[:100]}" is not a type; use one of {", ".join(TYPE_NAMES)}')
                    ok = False
            elif key == "description":
                Str(max_length=10_000).check(item, item_path, checker, in_params)
            elif key == "items":
                if value.get("type") != "array":
                    checker.add(item_path, "not_allowed", '"items" is only for arrays')
                else:
                    ok = TypeSpec().check(item, item_path, checker, in_params) and ok
            elif key in self.extra:
                self.extra[key].check(item, item_path, checker, in_params)
            else:
                checker.add(item_path, "unknown_field", f'unknown field "{key[:100]}"')
        return ok

    def schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {
            "type": {"enum": list(TYPE_NAMES)},
            "description": {"type": "string", "maxLength": 10_000},
            "items": {"$ref": "#/$defs/type"},
        }
        props.update({k: f.schema() for k, f in self.extra.items()})
        return {"type": "object", "properties": props, "required": ["type"],
                "additionalProperties": False}


def collect_references(value: Any, path: str, checker: Checker, template: bool) -> None:
    """Find every string holding references inside a JSON value (iteratively: no recursion)."""
    stack = [(value, path)]
    while stack:
        item, item_path = stack.pop()
        if isinstance(item, str):
            _collect_site(item, item_path, checker, template)
        elif isinstance(item, dict):
            stack.extend((v, pointer(item_path, k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, pointer(item_path, i)) for i, v in enumerate(item))


def _collect_site(text: str, path: str, checker: Checker, template: bool) -> None:
    if "{{" not in text:
        return
    try:
        parts = parse_template(text)
    except ReferenceSyntaxError as error:
        checker.add(path, "bad_reference", str(error))
        return
    if any(isinstance(part, ParsedReference) for part in parts):
        checker.sites.append(ReferenceSite(path, parts, template))


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    if description:
        schema["description"] = description
    return schema

