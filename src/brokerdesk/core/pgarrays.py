"""One-dimensional PostgreSQL arrays in binary form, built with C-level list operations.

psycopg dumps a list element by element in Python (a call and two ``struct.pack`` per
element); the bulk writers send tens of thousands of elements a second, so this module builds
the same wire format (a header, then per element a 4-byte length and the value) a column at a
time: ``struct`` packs whole integer columns, other values are encoded by ``map``, and a
column whose elements are all equal (a batch's timestamp, kind or currency) is one element
repeated. ``encode`` returns a ``PgArray`` that the dumpers ``register`` adds to a connection
send as they are; a column of a type not handled here, or with a value of an unexpected type,
stays a plain list, which psycopg dumps (and complains about) itself.
"""

from __future__ import annotations

import functools
import operator
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper

_HEAD = struct.Struct("!iiiii")  # dimensions, has-null, element oid, length, lower bound
_LEN = struct.Struct("!i")
_NULL = _LEN.pack(-1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's timestamp epoch
_MICROSECOND = timedelta(microseconds=1)
_int_of = operator.attrgetter("int")
_to_bytes: Any = int.to_bytes  # mapped with its arguments positionally


class PgArray(bytes):
    """A binary array ready to send; subclasses name the array type's oid."""

    __slots__ = ()
    array_oid = 0


def _int8(value: int) -> bytes:
    return b"\x00\x00\x00\x08" + value.to_bytes(8, "big", signed=True)


def _int4(value: int) -> bytes:
    return b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True)


def _uuid(value: uuid.UUID) -> bytes:
    return b"\x00\x00\x00\x10" + value.int.to_bytes(16, "big")


def _text(value: str) -> bytes:
    data = value.encode()
    return _LEN.pack(len(data)) + data


def _bool(value: bool) -> bytes:
    if value.__class__ is not bool:
        raise TypeError(f"{value!r} is not a bool")
    return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"


def _timestamptz(value: datetime) -> bytes:
    if value.tzinfo is None:
        raise TypeError("a naive datetime")  # psycopg decides what a naive one means
    micros = (value - _EPOCH) // _MICROSECOND
    return b"\x00\x00\x00\x08" + micros.to_bytes(8, "big", signed=True)


@functools.lru_cache(maxsize=512)
def _packer(length: int, code: str) -> struct.Struct:
    """Packs ``length`` (size, value) pairs: a whole integer column in one call."""
    return struct.Struct("!" + f"i{code}" * length)


def _packed(size: int, code: str) -> Callable[[list[Any]], bytes]:
    """Integers (``struct`` refuses floats and Decimals: psycopg's business then)."""

    def encode(values: list[Any]) -> bytes:
        pairs: list[Any] = [size] * (2 * len(values))
        pairs[1::2] = values
        return _packer(len(values), code).pack(*pairs)

    return encode


_UUID_SIZE = 16 << 128  # the element's length, as the first 4 of 20 bytes


def _uuids(values: list[Any]) -> bytes:
    """Each id's integer with its length above it, as 20 bytes (all in C: no call per id)."""
    sized = map(operator.or_, map(_int_of, values), repeat(_UUID_SIZE))
    return b"".join(map(_to_bytes, sized, repeat(20), repeat("big")))


def _texts(values: list[Any]) -> bytes:
    """Each string's UTF-8 bytes after their length (``str.encode`` refuses what is not text)."""
    data = list(map(str.encode, values))
    return b"".join(chain.from_iterable(zip(map(_LEN.pack, map(len, data)), data, strict=True)))


def _mapped(element: Callable[[Any], bytes]) -> Callable[[list[Any]], bytes]:
    def encode(values: list[Any]) -> bytes:
        return b"".join(map(element, values))

    return encode


@dataclass(frozen=True)
class _Kind:
    """How one element type is encoded."""

    element_oid: int
    array_class: type[PgArray]
    element: Callable[[Any], bytes]
    elements: Callable[[list[Any]], bytes]


def _kind(
    element_oid: int,
    array_oid: int,
    element: Callable[[Any], bytes],
    elements: Callable[[list[Any]], bytes] | None = None,
) -> _Kind:
    cls = type(f"PgArray{array_oid}", (PgArray,), {"__slots__": (), "array_oid": array_oid})
    return _Kind(element_oid, cls, element, elements or _mapped(element))


_TEXT = _kind(25, 1009, _text, _texts)  # varchar columns too: the statements cast to their own type
_KINDS: dict[str, _Kind] = {
    "bigint": _kind(20, 1016, _int8, _packed(8, "q")),
    "integer": _kind(23, 1007, _int4, _packed(4, "i")),
    "uuid": _kind(2950, 2951, _uuid, _uuids),
    "text": _TEXT,
    "varchar": _TEXT,
    "boolean": _kind(16, 1000, _bool),
    "timestamp with time zone": _kind(1184, 1185, _timestamptz),
}


def handles(type_name: str) -> bool:
    """Whether ``encode`` builds arrays of this type (a name as Django's ``db_type`` says it,
    ``varchar`` without its length)."""
    return type_name in _KINDS


def encode(type_name: str, values: Sequence[Any]) -> PgArray | list[Any]:
    """``values`` as a binary array of ``type_name``, or as a list when this module does not
    handle the type or one of the values (psycopg then dumps the list)."""
    items = list(values)
    kind = _KINDS.get(type_name)
    if kind is None or not items:
        return items
    try:
        body, has_null = _elements(kind, items)
    except (TypeError, AttributeError, OverflowError, struct.error):
        return items
    head = _HEAD.pack(1, has_null, kind.element_oid, len(items), 1)
    return kind.array_class(head + body)


def _elements(kind: _Kind, values: list[Any]) -> tuple[bytes, bool]:
    """The elements' bytes and whether a NULL is among them."""
    first = values[0]
    if values[-1] == first and values.count(first) == len(values):  # one value repeated
        if first is None:
            return _NULL * len(values), True
        return kind.element(first) * len(values), False
    if any(map(operator.is_, values, repeat(None))):  # not `in`: no __eq__ call per value
        element = kind.element
        return b"".join([_NULL if v is None else element(v) for v in values]), True
    return kind.elements(values), False


def _dumper(array_class: type[PgArray]) -> type[Dumper]:
    class ArrayDumper(Dumper):
        format = pq.Format.BINARY
        oid = array_class.array_oid

        def dump(self, obj: PgArray) -> bytes:
            return obj  # already the wire format

    return ArrayDumper


def register(conn: psycopg.Connection[Any]) -> None:
    """Let ``conn`` send ``PgArray`` values (registered once per connection)."""
    if getattr(conn, "_pgarrays_registered", False):
        return
    for kind in {id(k): k for k in _KINDS.values()}.values():
        conn.adapters.register_dumper(kind.array_class, _dumper(kind.array_class))
    conn._pgarrays_registered = True  # type: ignore[attr-defined]
