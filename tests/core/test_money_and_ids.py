"""Money on integer minor units, the currency table, and time-ordered UUIDv7 ids."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.ids import new_id
from brokerdesk.core.money import Money, get_currency


def test_parse_reads_major_units_into_minor_units():
    assert Money.parse("10.50", "USD") == Money(1050, "USD")
    assert Money.parse(Decimal("0.01"), "eur") == Money(1, "EUR")
    assert Money.parse("-3", "USD") == Money(-300, "USD")


def test_parse_refuses_more_decimals_than_the_currency_has():
    with pytest.raises(ValidationError) as err:
        Money.parse("10.505", "USD")
    assert err.value.code == "too_many_decimals"
    assert err.value.field == "amount"


def test_unknown_currency_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as err:
        Money.parse("1", "XYZ")
    assert (err.value.code, err.value.field) == ("unknown_currency", "currency")


def test_not_a_number_is_refused():
    with pytest.raises(ValidationError) as err:
        Money.parse("ten", "USD")
    assert err.value.code == "not_a_number"


def test_jpy_has_no_minor_unit():
    assert get_currency("JPY").scale == 0
    assert Money.parse("1500", "JPY") == Money(1500, "JPY")
    with pytest.raises(ValidationError):
        Money.parse("1500.5", "JPY")


def test_btc_has_eight_decimals():
    assert get_currency("BTC").scale == 8
    assert Money.parse("0.00000001", "BTC") == Money(1, "BTC")
    assert Money.parse("1.5", "BTC").amount == 150_000_000
    with pytest.raises(ValidationError):
        Money.parse("0.000000001", "BTC")


def test_amounts_must_be_integers_never_floats():
    with pytest.raises(ValidationError) as err:
        Money(10.5, "USD")  # type: ignore[arg-type]
    assert err.value.code == "not_integer"


def test_arithmetic_keeps_the_currency_and_refuses_mixing():
    assert Money(150, "USD") + Money(50, "USD") - Money(25, "USD") == Money(175, "USD")
    assert str(Money(1050, "USD")) == "10.50 USD"
    with pytest.raises(ValidationError) as err:
        Money(1, "USD") + Money(1, "EUR")
    assert err.value.code == "mixed_currencies"


def test_uuid7_ids_are_time_ordered():
    ids = []
    for _ in range(50):
        ids.append(new_id())
    time.sleep(0.002)
    later = new_id()

    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert len(set(ids)) == 50
    assert ids == sorted(ids)
    assert later > ids[-1]
    millis = later.int >> 80
    assert abs(millis - time.time() * 1000) < 5_000


def test_uuid7_ids_stay_increasing_past_4096_in_one_millisecond(monkeypatch):
    from brokerdesk.core import ids as ids_module

    frozen = time.time_ns()
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: frozen)
    made = [new_id() for _ in range(10_000)]  # more than the 12-bit counter holds

    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in made)
    assert (made[-1].int >> 80) - frozen // 1_000_000 >= 1  # borrowed the next millisecond


def test_uuid7_ids_made_by_many_threads_are_unique():
    import threading

    made: list[uuid.UUID] = []

    def make() -> None:
        made.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 40_000


def test_uuid7_ids_behave_as_ordinary_uuids():
    made = new_id()
    parsed = uuid.UUID(str(made))

    assert parsed == made and hash(parsed) == hash(made) and parsed.int == made.int
    assert made.version == 7 and made.variant == uuid.RFC_4122
    import copy

    assert copy.deepcopy(made) == made and f"{made}" == str(parsed)


def test_a_forked_child_draws_its_own_random_bits():
    import os

    new_id()  # the parent has a pool of random bytes now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the random part of its next two ids
        os.write(write_end, new_id().bytes[8:] + new_id().bytes[8:])
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read_end, 16)
    mine = new_id().bytes[8:] + new_id().bytes[8:]

    assert child[:8] != mine[:8] and child[8:] != mine[8:]
