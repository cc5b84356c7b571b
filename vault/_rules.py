"""Every rule of ChatBotKit's secret resource, once: fields, defaults, validation, paging, meta, masking.

Each surface (the vault API ``v.secret``, the HTTP stand-in, ``vault.aio``, sync, import)
calls these functions rather than restating a rule, so the surfaces cannot drift apart.
Field names follow the cloud (camelCase on the wire, snake_case in Python, as the official
Python SDK names them). Validation messages name the field and the rule, never the value.
Each rule follows the platform's own source (its secret routes and the helpers they call);
where the local vault API differs on purpose, the README says so. No I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import _format
from ._format import Entry
from ._index import Index
from .errors import ConflictError, InvalidRequestError

__all__ = [
    "CLOUD_TEXT_BYTES",
    "CLOUD_VALUE_BYTES",
    "DEFAULTS",
    "ITEM_FIELDS",
    "MASK",
    "MAX_TIMESTAMP",
    "REQUEST_FIELDS",
    "SCHEMA_ORDER",
    "VALUE_TYPE",
    "apply_fields",
    "blueprint_id",
    "check_alias_free",
    "check_cloud_text",
    "check_config_shape",
    "check_field",
    "check_fields",
    "check_meta_keys",
    "check_record_id",
    "hide_unsafe_keys",
    "js_trim",
    "check_timestamp",
    "json_copy",
    "mask_config",
    "merge_meta",
    "meta_filter",
    "meta_path",
    "new_entry",
    "normalize_fields",
    "order_ascending",
    "parse_int",
    "query_text",
    "take_count",
    "unmask_config",
    "value_usable",
    "with_ext",
]

#: The cloud's sentinel for a masked ``config.clientSecret``; sent back on update it means "keep".
MASK: Final = "********"

#: wire name -> Python name, for every field a create or update request may carry.
REQUEST_FIELDS: Final[dict[str, str]] = {
    "name": "name",
    "description": "description",
    "kind": "kind",
    "type": "type",
    "value": "value",
    "alias": "alias",
    "meta": "meta",
    "config": "config",
    "visibility": "visibility",
    "blueprintId": "blueprint_id",
}
_SNAKE: Final = frozenset(REQUEST_FIELDS.values())

#: (wire name, Python name) of every field of the cloud's secret item, in its response order.
#: There is no ``value``: the cloud never returns one.
ITEM_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("id", "id"),
    ("alias", "alias"),
    ("name", "name"),
    ("description", "description"),
    ("blueprintId", "blueprint_id"),
    ("kind", "kind"),
    ("type", "type"),
    ("config", "config"),
    ("visibility", "visibility"),
    ("meta", "meta"),
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
)

#: What the cloud stores when a create request leaves a field out.
DEFAULTS: Final[dict[str, Any]] = {
    "name": "",
    "description": "",
    "kind": "shared",
    "type": "plain",
    "value": None,
    "alias": None,
    "meta": None,
    "config": None,
    "visibility": "private",
    "blueprint_id": None,
}

#: The key order of the cloud's create/update body schema: Joi reports the first problem in this
#: order, unknown keys only after every known key passed (docs/FIDELITY.md C5).
SCHEMA_ORDER: Final = (
    "alias",
    "name",
    "description",
    "blueprintId",
    "kind",
    "type",
    "value",
    "config",
    "visibility",
    "meta",
)

#: The hosted database's column limits, which the stand-in applies and the local vault API does
#: not (it must hold whatever a sync pulls). Inferred, not published (docs/FIDELITY.md C10-C12):
#: ``name`` is a MySQL ``VARCHAR(191)`` (counted here in bytes, the stricter reading of the
#: schema's ``maxByteLength``), ``description`` a ``TEXT`` column (65,535 bytes).
CLOUD_TEXT_BYTES: Final[dict[str, int]] = {"name": 191, "description": 65_535}
#: ``value`` is stored encrypted (base64 and an envelope) in a 65,535-byte ``TEXT`` column, which
#: leaves about 49 KB of plaintext; the stand-in refuses more than this many UTF-8 bytes.
CLOUD_VALUE_BYTES: Final = 48_000

#: JavaScript's white space and line terminators: what ``String.prototype.trim`` and
#: ``parseInt`` skip (not Python's ``str.isspace``, which also counts U+001C-U+001F and U+0085).
_JS_SPACE: Final = (
    "\t\n\v\f\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: The cloud's update drops meta keys matching JavaScript ``/^[\W_]/`` (ASCII ``\W``): it keeps
#: a key only when it starts with an ASCII letter or digit (or is empty).
_KEPT_KEY_START: Final = re.compile(r"[A-Za-z0-9]")
_ALIAS_PATTERN_MESSAGE: Final = "Alias must contain only lowercase letters, numbers, hyphens, and underscores"
#: One step of a MySQL JSON path member: an ECMAScript identifier, or a double-quoted name.
_PATH_MEMBER: Final = re.compile(r'(?:[^\W\d]|\$)(?:\w|\$)*|"[^"\\]*"')
_PATH_INDEX: Final = re.compile(r"\[([0-9]+)\]")
_DIGITS: Final = {10: re.compile(r"[0-9]+"), 16: re.compile(r"[0-9A-Fa-f]+")}
#: JavaScript's parseInt reads any number of digits; past this many the magnitude is all that
#: matters (every caller clamps it), and Python refuses to parse very long digit strings.
_MAX_DIGITS: Final = 30


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _field_label(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 64 else text[:61] + "..."


def _joi_label(key: str) -> str:
    return key if len(key) <= 64 else key[:61] + "..."


def js_trim(text: str) -> str:
    """JavaScript's ``String.prototype.trim``."""
    return text.strip(_JS_SPACE)


def _utf16_length(text: str) -> int:
    # JavaScript's string length: a character outside the BMP counts twice.
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def json_copy(obj: Any) -> Any:
    """A deep copy of JSON-shaped data: callers never hold a reference into the vault's state."""
    # Leaves are immutable and shared; only containers are copied. Testing the child's type
    # inline spares a call per leaf: list and fetch copy every item's meta this way.
    if type(obj) is dict:
        return {k: json_copy(v) if type(v) in _CONTAINERS else v for k, v in obj.items()}
    if type(obj) is list:
        return [json_copy(v) if type(v) in _CONTAINERS else v for v in obj]
    return obj


_CONTAINERS: Final = (dict, list)


# --- field validation -----------------------------------------------------------------------
#
# Messages use the cloud's (Joi's) words for the cloud's rules, on every surface, and the
# vault's own words for its own limits (size, depth, Unicode).


def _check_json(name: str, obj: object) -> dict[str, Any] | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise _bad(f'"{name}" must be of type object')
    try:
        copied: dict[str, Any] = _format.json_copy_checked(obj)
    except ValueError:
        raise _bad(f"{name} must be JSON (string keys; nested at most {_format.MAX_DEPTH} deep)") from None
    try:
        size = len(_format.packb(copied))
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"{name} must be JSON") from None
    if size > _format.MAX_JSON:
        raise _bad(f"{name} is larger than {_format.MAX_JSON} bytes")
    return copied


def _check_text(name: str, obj: object, limit: int) -> str:
    if type(obj) is not str:
        raise _bad(f'"{name}" must be a string')
    if len(obj) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
    try:
        obj.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name} must be valid Unicode text") from None
    return obj


def _check_enum(name: str, obj: object, allowed: tuple[str, ...]) -> str:
    if obj not in allowed or type(obj) is not str:
        raise _bad(f'"{name}" must be one of [{", ".join(allowed)}]')
    return obj


def _check_value(obj: object) -> str | None:
    if obj is None:
        return None
    if type(obj) is not str:
        raise _bad('"value" must be a string')
    try:
        size = len(obj.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad("value must be valid Unicode text") from None
    if size > _format.MAX_VALUE:
        raise _bad(f"value is larger than {_format.MAX_VALUE} bytes")
    return obj


def _check_alias(obj: object) -> str | None:
    # Joi: string().allow(null, '').empty('').max(128).pattern(...), checked in that order.
    if obj is None or obj == "":
        return None  # the cloud treats "" and null alike: no alias
    if type(obj) is not str:
        raise _bad('"alias" must be a string')
    if _utf16_length(obj) > _format.MAX_ALIAS:
        raise _bad(f'"alias" length must be less than or equal to {_format.MAX_ALIAS} characters long')
    if _format.ALIAS_RE.fullmatch(obj) is None:
        raise _bad(_ALIAS_PATTERN_MESSAGE)
    return obj


def blueprint_id(obj: object) -> str | None:
    """The cloud's ``blueprintId``: a string or null, trimmed; blank is null (docs/FIDELITY.md E5).

    Only the type is checked here. On the cloud any other value must name a blueprint the
    caller may use; the stand-in, which has none, refuses it (``vault._api``).
    """
    if obj is None:
        return None
    if type(obj) is not str:
        raise _bad('"blueprintId" must be a string')
    return js_trim(obj) or None


def check_cloud_text(name: str, text: str) -> None:
    """The stand-in's column limit for ``name`` or ``description`` (:data:`CLOUD_TEXT_BYTES`)."""
    limit = CLOUD_TEXT_BYTES[name]
    if _utf8_length(text) > limit:
        raise _bad(f'"{name}" must be less than or equal to {limit} bytes long')


def check_field(name: str, obj: object) -> Any:
    """Validate one snake_case field; returns the value to store."""
    if name in ("name", "description"):
        return _check_text(name, obj, _format.MAX_NAME if name == "name" else _format.MAX_DESCRIPTION)
    if name == "kind":
        return _check_enum("kind", obj, _format.KINDS)
    if name == "type":
        return _check_enum("type", obj, _format.TYPES)
    if name == "visibility":
        return _check_enum("visibility", obj, _format.VISIBILITIES)
    if name == "value":
        return _check_value(obj)
    if name == "alias":
        return _check_alias(obj)
    if name in ("meta", "config"):
        return _check_json(name, obj)
    if name == "blueprint_id":
        found = blueprint_id(obj)
        if found is not None and len(found) > _format.MAX_ID:
            raise _bad(f"blueprintId is longer than {_format.MAX_ID} characters")
        return found
    raise _bad(f"unknown field {_field_label(name)}")


def check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate snake_case fields; returns the values to store."""
    return {key: check_field(key, value) for key, value in fields.items()}


#: The reader's range for a record's times (``_format.decode_entry``): epoch milliseconds, 0..2**63-1.
MAX_TIMESTAMP: Final = (1 << 63) - 1


def check_timestamp(name: str, obj: object) -> int:
    """A time in epoch milliseconds, as the reader will accept it: an int in 0..2**63-1.

    A whole float (``1700000000000.0``: JSON has one number type, and some encoders write
    it so) is taken as its int; NaN, the infinities, fractions, bools and strings are refused.
    Checked where times enter from outside (a sync pull), so no writer hands the reader a
    time it would call corrupt.
    """
    if type(obj) is float and math.isfinite(obj) and obj.is_integer():
        obj = int(obj)
    if type(obj) is not int or not 0 <= obj <= MAX_TIMESTAMP:
        raise _bad(f"{name} must be a whole number of milliseconds from 0 to 2**63-1")
    return obj


def check_record_id(record_id: object) -> str:
    if type(record_id) is not str or _format.ID_RE.fullmatch(record_id) is None:
        raise _bad("record id has the wrong form")
    return record_id


def normalize_fields(request: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a camelCase request mapping and snake_case keyword fields into snake_case.

    Unknown fields are rejected (the cloud's schema rejects unknown keys); the same
    field given twice is ambiguous and rejected too. Values are not validated here.
    """
    out: dict[str, Any] = {}
    if request is not None:
        if not isinstance(request, Mapping):
            raise _bad("request must be a mapping")
        for key, value in request.items():
            if key not in REQUEST_FIELDS:
                raise _bad(f"unknown field {_field_label(key)}")
            out[REQUEST_FIELDS[key]] = value
    for key, value in kwargs.items():
        if key not in _SNAKE:
            raise _bad(f"unknown field {_field_label(key)}")
        if key in out:
            raise _bad(f"field {key!r} given twice")
        out[key] = value
    return out


# --- meta and config ----------------------------------------------------------------------


def check_meta_keys(meta: Mapping[str, Any] | None) -> None:
    """The cloud's meta schema, on create and on update (``object().pattern(/^[^_]/)``).

    A top-level key that is empty or begins with ``_`` is a 400. Keys inside an update's
    ``$update`` are not checked here: the merge filters them (:func:`merge_meta`).
    """
    for key in meta or ():
        if not key or key[0] == "_":
            raise _bad(f'"meta.{_joi_label(key)}" is not allowed')


def _kept_keys(meta: Mapping[str, Any]) -> dict[str, Any]:
    # The cloud's update filter (platform lib/meta.ts getMeta, INTERNAL_META_KEY_PATTERN), top level only.
    return {k: v for k, v in meta.items() if not k or _KEPT_KEY_START.match(k)}


def _utf16_units(text: str) -> list[str]:
    units: list[str] = []
    for c in text:
        point = ord(c)
        if point > 0xFFFF:
            point -= 0x10000
            units += [chr(0xD800 + (point >> 10)), chr(0xDC00 + (point & 0x3FF))]
        else:
            units.append(c)
    return units


def _spread(obj: object) -> dict[str, Any]:
    """What JavaScript's ``{...obj}`` adds to an object, for a JSON value."""
    if isinstance(obj, Mapping):
        return _kept_keys(obj)
    if isinstance(obj, list):
        return {str(i): v for i, v in enumerate(obj)}
    if isinstance(obj, str):
        return {str(i): unit for i, unit in enumerate(_utf16_units(obj))}
    return {}  # null, numbers and booleans spread nothing


def merge_meta(old: dict[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    """An update's meta, as the cloud computes it (one rule for every surface).

    Without ``$update`` the sent meta replaces the stored one, minus the keys that do not start
    with an ASCII letter or digit. With ``$update`` (whatever else is sent beside it) its value
    is spread over the stored meta: an object's kept keys, an array's or a string's indices;
    null, a number or a boolean change nothing.
    """
    if sent is None:
        return None
    if "$update" in sent:
        merged = {**(old or {}), **_spread(sent["$update"])}
        result: dict[str, Any] = check_field("meta", merged)
        return result
    return _kept_keys(sent)


def hide_unsafe_keys(obj: Any) -> Any:
    """The cloud's answers drop every key beginning with ``#``, at every depth (``makeJsonSafe``)."""
    if type(obj) is dict:
        return {k: hide_unsafe_keys(v) for k, v in obj.items() if not k.startswith("#")}
    if type(obj) is list:
        return [hide_unsafe_keys(v) for v in obj]
    return obj


def mask_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The cloud's response masking: a truthy clientSecret becomes MASK, an empty one None."""
    if config is None:
        return None
    out: dict[str, Any] = json_copy(dict(config))
    if "clientSecret" in out:
        out["clientSecret"] = MASK if out["clientSecret"] else None
    return out


def unmask_config(old: Mapping[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    """The cloud's round trip: a masked clientSecret sent back means "keep what is stored".

    With nothing stored, the mask is dropped rather than stored as if it were a secret.
    """
    if sent is None or sent.get("clientSecret") != MASK:
        return sent
    out = dict(sent)
    if old is not None and "clientSecret" in old:
        out["clientSecret"] = old["clientSecret"]
    else:
        del out["clientSecret"]
    return out


#: The two object shapes of the cloud's ``SecretConfig`` (zod), key by key in their order;
#: True marks a key that must be a URL. Both shapes let any other key through.
_OAUTH_SHAPE: Final = (
    ("clientId", False),
    ("clientSecret", False),
    ("authorizationUrl", True),
    ("tokenUrl", True),
    ("revokeUrl", True),
    ("scope", False),
    ("grantType", False),
)
_BASIC_SHAPE: Final = (("username", False), ("password", False), ("user", False), ("pass", False))
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_SPECIAL_SCHEMES: Final = frozenset({"http", "https", "ws", "wss", "ftp"})
_URL_AUTHORITY: Final = re.compile(
    r"//(?:[^/?#@\[\]]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{0,5}))?(?=[/?#]|$)"
)
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def _json_type(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, (int, float)):
        return "number"
    if isinstance(obj, list):
        return "array"
    return "object" if isinstance(obj, Mapping) else "string"


def _is_url(text: str) -> bool:
    """Whether a WHATWG URL parser (zod's ``url()``) surely accepts ``text``.

    Stricter than the parser where it is unsure: no white space or control characters,
    ``scheme://host`` for the special schemes, an ASCII host, a dotted-quad IPv4 address when
    the host ends in a number, a port up to 65535.
    """
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        return False
    scheme = _URL_SCHEME.match(text)
    if scheme is None:
        return False
    if scheme.group()[:-1].lower() not in _SPECIAL_SCHEMES:
        return True
    authority = _URL_AUTHORITY.match(text, scheme.end())
    if authority is None:
        return False
    port = authority.group("port")
    if port and int(port) > 65_535:
        return False
    host = authority.group("host")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not all(labels):
        return False
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return len(labels) == 4 and all(p.isdigit() and int(p) <= 255 for p in labels)
    return True


def _shape_problems(config: Mapping[str, Any], shape: tuple[tuple[str, bool], ...]) -> list[str]:
    problems = []
    for key, url in shape:
        if key not in config:
            continue
        found = config[key]
        if type(found) is not str:
            problems.append(f'Expected string, received {_json_type(found)} at "{key}"')
        elif url and not _is_url(found):
            problems.append(f'Invalid url at "{key}"')
    return problems


def check_config_shape(config: Mapping[str, Any] | None) -> None:
    """The cloud's ``SecretConfig``: null, or an object that the oauth or the basic shape accepts.

    Refused (400) only when both fail, e.g. ``{"authorizationUrl": "notaurl", "username": 5}``.
    The message names keys, never values; its wording after the colon is zod's, inferred.
    """
    if config is None:
        return
    oauth = _shape_problems(config, _OAUTH_SHAPE)
    basic = _shape_problems(config, _BASIC_SHAPE) if oauth else []
    if oauth and basic:
        raise _bad('"config" contains an invalid value: ' + "; ".join(oauth + basic))


# --- list ---------------------------------------------------------------------------------------


def query_text(value: object) -> str:
    """What a value becomes once an SDK has put it in a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_int(value: object, radix: int | None = None) -> int | None:
    """JavaScript's ``parseInt(text, radix)`` of the query text an SDK would send, or None (NaN).

    Leading JavaScript white space and a sign are skipped, then the leading digits count:
    ``5.0``, ``"5x"`` and ``" 5"`` are 5, ``1e3`` is 1. Without a radix (how the cloud reads a
    page's ``take``) ``0x10`` is hexadecimal, 16; with radix 10 (the JSONL count) it is 0.
    """
    if value is None:
        return None
    text = query_text(value).lstrip(_JS_SPACE)
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    base = radix or 10
    if radix in (None, 16) and text[:2] in ("0x", "0X"):
        text, base = text[2:], 16
    found = _DIGITS[base].match(text)
    return sign * int(found.group()[:_MAX_DIGITS], base) if found else None


def take_count(value: object) -> int:
    """The cloud's page size: 0, missing or not a number gives 100; below 1 gives 1; at most 100."""
    number = parse_int(value)
    if not number:
        return 100
    return max(1, min(100, number))


def order_ascending(order: object) -> bool:
    """``asc`` (trimmed) sorts oldest first; anything else (``desc``, missing, ``ASC``) newest first."""
    return isinstance(order, str) and js_trim(order) == "asc"


def meta_path(key: str) -> tuple[str | int, ...]:
    """The steps of the MySQL JSON path ``$.KEY`` that a cloud meta filter ``meta.KEY`` queries.

    Dots walk into objects, ``[n]`` into arrays, and a name must be an ECMAScript identifier
    (or double-quoted). Any other key makes the cloud's query fail: InvalidRequestError here.
    """
    steps: list[str | int] = []
    pos = 0
    while True:
        member = _PATH_MEMBER.match(key, pos)
        if member is None:
            raise _bad(f"meta filter key {_field_label(key)} is not a JSON path the cloud can query")
        name = member.group()
        steps.append(name[1:-1] if name.startswith('"') else name)
        pos = member.end()
        while (index := _PATH_INDEX.match(key, pos)) is not None:
            steps.append(int(index.group(1)))
            pos = index.end()
        if pos == len(key):
            return tuple(steps)
        if key[pos] != ".":
            raise _bad(f"meta filter key {_field_label(key)} is not a JSON path the cloud can query")
        pos += 1


def _at_path(meta: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    current = meta
    for step in path:
        if isinstance(step, int):
            if type(current) is not list or step >= len(current):
                return False, None
            current = current[step]
        elif type(current) is dict and step in current:
            current = current[step]
        else:
            return False, None
    return True, current


def meta_filter(meta: Mapping[str, Any] | None) -> Callable[[Entry], bool] | None:
    """The cloud's ``meta.KEY=VALUE`` list filter as a predicate (None: no filter).

    Values are the query text the SDKs send: ``true``/``false`` become booleans, anything else
    stays a string, and the stored JSON must equal it (a stored number 5 is not ``"5"``). A
    None or empty value is no filter (the SDKs leave None out; the cloud skips ``meta.k=``).
    KEY is a JSON path (:func:`meta_path`); several filters must all hold.
    """
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise _bad("meta filter must be a mapping")
    wanted: list[tuple[tuple[str | int, ...], object]] = []
    for key, want in meta.items():
        if type(key) is not str:
            raise _bad("meta filter keys must be strings")
        text = None if want is None else query_text(want)
        if not text:
            continue
        wanted.append((meta_path(key), {"true": True, "false": False}.get(text, text)))
    if not wanted:
        return None

    def keep(entry: Entry) -> bool:
        for path, want in wanted:
            found, current = _at_path(entry.meta, path)
            if not found or type(current) is not type(want) or current != want:
                return False
        return True

    return keep


# --- building records -------------------------------------------------------------------------


def check_alias_free(index: Index, alias: str | None, record_id: str | None) -> None:
    """An alias is unique per owner: the cloud answers a duplicate with 409."""
    if alias is None:
        return
    owner = index.aliases.get(alias)
    if owner is not None and owner != record_id:
        raise ConflictError(f"alias {alias!r} is already in use")


Seal = Callable[[str, int, str], bytes]

#: Key in a record's ext map: the type the secret had when its value was written. A value is a
#: credential only of that type: changing a plain API key's type to oauth must not let mint
#: hand the key out as an "access token".
VALUE_TYPE: Final = "valueType"


def value_usable(entry: Entry) -> bool:
    """Whether the stored value was written as the secret's current type (so use-time routes may use it).

    The marker is set only when an update changes the type and keeps the value, so a record
    without one holds a value written as its current type.
    """
    written_as = entry.ext.get(VALUE_TYPE)
    return written_as is None or bool(written_as == entry.type)


def new_entry(record_id: str, now: int) -> Entry:
    """A record holding only the cloud's defaults, revision 0 (``apply_fields`` makes it 1)."""
    d = DEFAULTS
    return Entry(
        record_id,
        0,
        now,
        now,
        d["name"],
        d["description"],
        d["kind"],
        d["type"],
        d["visibility"],
        None,
        None,
        None,
        None,
        0,
        None,
        _format.NO_EXT,
    )


def apply_fields(old: Entry, checked: Mapping[str, Any], index: Index, seal: Seal, *, merge: bool) -> Entry:
    """The next revision of ``old`` with validated snake_case fields applied.

    ``merge=True`` applies an update's rules (``$update`` meta merge, masked clientSecret
    kept); ``merge=False`` stores the fields as given (create, sync pull, import).
    A value is sealed under the new revision, so every value box names the revision it
    was written at.
    """
    new = old.copy()
    new.rev = old.rev + 1
    for key, value in checked.items():
        if key == "value":
            new.value_rev = new.rev
            new.value_box = None if value is None else seal(new.id, new.rev, value)
            new.ext = {k: v for k, v in new.ext.items() if k != VALUE_TYPE}
            continue
        if merge and key == "meta":
            value = merge_meta(old.meta, value)
        elif merge and key == "config":
            value = unmask_config(old.config, value)
        elif key == "alias" and value != old.alias:
            check_alias_free(index, value, new.id)
        setattr(new, key, value)
    if new.type != old.type and "value" not in checked and new.value_box is not None and VALUE_TYPE not in new.ext:
        # The value stays but the type changes: remember what the value was written as.
        new.ext = {**new.ext, VALUE_TYPE: old.type}
    return new


def with_ext(entry: Entry, ext: Mapping[str, Any]) -> dict[str, Any]:
    """A caller's ext map for ``entry`` (sync's links), keeping the record's own value-type marker."""
    out = {k: v for k, v in ext.items() if k != VALUE_TYPE}
    if VALUE_TYPE in entry.ext:
        out[VALUE_TYPE] = entry.ext[VALUE_TYPE]
    return out
