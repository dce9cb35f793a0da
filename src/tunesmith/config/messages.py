"""One-line messages for the recipe schema's errors, and the bound on YAML aliases (for tunesmith/recipe.py).

Pydantic reports a value that fits none of a union's types (`train.eval_every: 0.5`) as one error per
type, each located with the type's tag (`train.eval_every.literal['epoch']`, `train.eval_every.int`).
Here the tags are dropped and such errors become one line that names the key and the forms it accepts,
read from the recipe's JSON schema: `key 'train.eval_every': must be 'epoch' or a whole number >= 1
(got 0.5)`. Values echoed in a message are cut to tunesmith.errors.SHOWN_LIMIT characters.

Imports only pydantic and tunesmith.errors (the Recipe model is passed in): no cycle with recipe.py.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from typing import Any

from pydantic.errors import PydanticUserError

from tunesmith.errors import shorten, shown

ALIAS_LIMIT = 10_000  # YAML nodes that aliases may add to a recipe (a real recipe adds a few dozen)

# how pydantic tags the member of a union (or a wrapped validator) in an error's location
_TAG = re.compile(r"(literal|function-(after|before|wrap|plain)|lax-or-strict|json-or-python|nullable|union|"
                  r"tagged-union|chain|dict|list|tuple|set|frozenset)\[.*\]|constrained-[a-z]+", re.S)
_TYPE_TAGS = {"int", "float", "str", "bool", "none", "bytes", "decimal"}
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}


# --- YAML aliases ----------------------------------------------------------------------------------

def _children(node) -> list:
    value = getattr(node, "value", None)
    if not isinstance(value, list):
        return []  # a scalar
    if value and isinstance(value[0], tuple):  # a mapping: (key, value) pairs
        return [part for pair in value for part in pair]
    return value


def expanded_size(root) -> float:
    """How many YAML nodes the aliases of a composed document add once expanded (``math.inf`` when an
    alias sits inside the node it names). Linear in the document's own nodes, however far they expand."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()  # started, not finished: the path from the root
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
        elif key not in size:
            if key in open_nodes:
                return math.inf
            open_nodes.add(key)
            stack.append((node, True))
            for child in _children(node):
                if id(child) in open_nodes:
                    return math.inf
                if id(child) not in size:
                    stack.append((child, False))
    return size[id(root)] - len(size)


def alias_problem(root) -> str | None:
    """Why a composed YAML document is refused for its aliases, or None."""
    added = expanded_size(root)
    if added == math.inf:
        return "an alias (*name) is used inside the value it names; write the value out"
    if added > ALIAS_LIMIT:
        return (f"its aliases (*name) expand to more than {ALIAS_LIMIT} values; write the values out "
                f"instead of nesting aliases")
    return None


# --- validation errors -----------------------------------------------------------------------------

def _plain_loc(loc: tuple) -> list:
    """The recipe key of an error location: union-member and validator tags removed."""
    plain, previous = [], ""
    for part in loc:
        text = str(part)
        is_tag = isinstance(part, str) and (_TAG.fullmatch(text) is not None or (
            text in _TYPE_TAGS and not previous.startswith("dict[")))  # after dict[...]: a user's key
        if not is_tag:
            plain.append(part)
        previous = text
    return plain


def describe_errors(errors: list[dict], model) -> str:
    """The message for a pydantic ValidationError's ``errors()`` on ``model`` (the Recipe class)."""
    first = errors[0]
    loc = _plain_loc(first["loc"])
    related = [e for e in errors if _plain_loc(e["loc"])[: len(loc)] == loc]
    deeper = [e for e in related if len(_plain_loc(e["loc"])) > len(loc)]
    if loc and deeper:  # the value has the shape of one member of a union and fails inside it
        return _describe_one(deeper[0], model)
    if len(first["loc"]) > len(loc) and len(related) > 1:  # the value fits no member of a union
        custom = [e for e in related if e["type"] == "value_error"]
        if custom:
            return _describe_one(custom[0], model)
        forms = _accepted_forms(model, tuple(loc)) or _forms_of_errors(related)
        if forms:
            return f"key '{_key(loc)}': must be {_either(forms)}{_got(first)}"
    return _describe_one(first, model)


def _key(loc: list) -> str:
    return ".".join(shorten(str(p), 60) for p in loc)


def _got(error: dict) -> str:
    value = error.get("input")
    return "" if isinstance(value, dict) else f" (got {shown(value)})"


def _describe_one(error: dict, model) -> str:
    loc = _plain_loc(error["loc"])
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        hint = _close_match([str(p) for p in loc], model)
        return f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if error["type"] == "missing":
        return f"missing key '{key}'"
    if error["type"] in _MAPPING_ERRORS:
        message = "must be a mapping (key: value lines)"
    else:
        message = shorten(error["msg"].removeprefix("Value error, "), 400)  # a validator may echo the value
    return f"key '{key}': {message}{_got(error)}" if key else message


def _close_match(loc: list[str], model) -> str | None:
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and hasattr(annotation, "model_fields")):
            return None
        model = annotation
    matches = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return ".".join(loc[:-1] + matches[:1]) if matches else None


def _either(forms: list[str]) -> str:
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


# --- the forms a key accepts, from the JSON schema -------------------------------------------------

@functools.cache
def _schema(model) -> dict:
    try:
        return model.model_json_schema()
    except PydanticUserError:  # a field without a JSON schema: the forms come from the errors instead
        return {}


def _resolve(node: dict, defs: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node if isinstance(node, dict) else {}


def _child(node: dict, part: Any, defs: dict) -> dict | None:
    for option in [node, *node.get("anyOf", [])]:
        option = _resolve(option, defs)
        if isinstance(part, str) and part in option.get("properties", {}):
            return option["properties"][part]
        if isinstance(part, str) and isinstance(option.get("additionalProperties"), dict):
            return option["additionalProperties"]
        if isinstance(part, int) and isinstance(option.get("items"), dict):
            return option["items"]
    return None


def _accepted_forms(model, loc: tuple) -> list[str]:
    """What the schema accepts at ``loc``, in words: ["'epoch'", "a whole number >= 1"]."""
    schema = _schema(model)
    defs = schema.get("$defs", {})
    node: dict | None = schema
    for part in loc:
        node = _child(_resolve(node, defs), part, defs)
        if node is None:
            return []
    node = _resolve(node, defs)
    forms: list[str] = []
    for member in node.get("anyOf", [node]):
        forms += _forms(_resolve(member, defs))
    if "a number" in forms:
        forms = [f for f in forms if f != "a whole number"]
    return list(dict.fromkeys(forms))


def _forms(member: dict) -> list[str]:
    if "const" in member:
        return [_literal(member["const"])]
    if "enum" in member:
        return [_literal(v) for v in member["enum"]]
    kind = member.get("type")
    if kind in ("integer", "number"):
        bounds = [f"{sign} {_literal(member[name])}" for name, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                                 ("maximum", "<="), ("exclusiveMaximum", "<"))
                  if name in member]
        return [("a whole number" if kind == "integer" else "a number") + "".join(
            (" " if i == 0 else " and ") + b for i, b in enumerate(bounds))]
    words = {"string": ["a string"], "boolean": ["true", "false"], "null": ["null"], "object": ["a mapping"],
             "array": ["a list"]}
    return words.get(kind, [])


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return f"'{value}'" if isinstance(value, str) else str(value)


def _forms_of_errors(errors: list[dict]) -> list[str]:
    """The forms of a union's members, from their errors alone (when the schema does not say)."""
    words = {"literal_error": None, "int_type": "a whole number", "int_parsing": "a whole number",
             "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
             "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
             "dict_type": "a mapping", "model_type": "a mapping", "list_type": "a list", "none_required": "null"}
    forms = []
    for error in errors:
        if error["type"] == "literal_error":
            forms.append(str(error.get("ctx", {}).get("expected", "")))
        elif words.get(error["type"]):
            forms.append(words[error["type"]])
    return [f for f in dict.fromkeys(forms) if f]
