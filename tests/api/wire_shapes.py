"""Field-by-field checks of raw response bodies and stream payloads against the published schemas,
as the official SDKs carry them (their pydantic types are generated from OpenAI's OpenAPI spec and
Anthropic's API reference): every field tern sends must be one the schema defines, with the type it
defines, recursively; the SDKs themselves accept unknown fields silently, so parsing alone would not
catch a misnamed or misplaced one. `allowed_extras` names the few documented extensions (OpenRouter's
`provider`, `usage.cost`, `usage.cache_retention_denied_tokens`)."""
import types
import typing

import pydantic

# Extensions tern documents on top of the schemas (docs/gateway.md): who answered, and what it cost.
ALLOWED_EXTRAS = {"provider", "cost", "cache_retention_denied_tokens"}


def _unwrap(annotation):
    """The pydantic model, list item type or literal values an annotation stands for."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def check(value, annotation, path="$", problems=None):
    """Problems found checking `value` against `annotation` (a pydantic model or typing form)."""
    problems = [] if problems is None else problems
    ann = _unwrap(annotation)
    if isinstance(ann, list):  # a union: the value must fit one member
        if value is None:
            return problems
        best = None
        for member in ann:
            found = check(value, member, path, [])
            if not found:
                return problems
            best = found if best is None or len(found) < len(best) else best
        problems.extend(best or [f"{path}: fits no member of the union"])
        return problems
    origin = typing.get_origin(ann)
    if value is None:
        return problems  # optional fields: the SDK types mark them Optional; the server may send null
    if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object ({ann.__name__}), got {type(value).__name__}")
            return problems
        fields = ann.model_fields
        for key, item in value.items():
            if key in fields:
                check(item, fields[key].annotation, f"{path}.{key}", problems)
            elif key not in ALLOWED_EXTRAS:
                problems.append(f"{path}.{key}: not a field of {ann.__name__}")
        for name, field in fields.items():
            if field.is_required() and name not in value:
                problems.append(f"{path}.{name}: required by {ann.__name__}, missing")
        return problems
    if origin in (list, typing.List):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return problems
        (item_type,) = typing.get_args(ann) or (typing.Any,)
        for i, item in enumerate(value):
            check(item, item_type, f"{path}[{i}]", problems)
        return problems
    if origin is typing.Literal:
        if value not in typing.get_args(ann):
            problems.append(f"{path}: {value!r} is not one of {typing.get_args(ann)}")
        return problems
    if origin in (dict, typing.Dict) or ann in (object, typing.Any, dict):
        return problems
    if ann is str and not isinstance(value, str):
        problems.append(f"{path}: expected a string, got {value!r}")
    elif ann is bool and not isinstance(value, bool):
        problems.append(f"{path}: expected a boolean, got {value!r}")
    elif ann is int and (not isinstance(value, int) or isinstance(value, bool)):
        problems.append(f"{path}: expected an integer, got {value!r}")
    elif ann is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        problems.append(f"{path}: expected a number, got {value!r}")
    return problems
