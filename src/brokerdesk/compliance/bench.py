"""Screening benchmark and evaluation on synthetic data (no real person's name is used).

``run(list_size=…, clients=…)`` builds a list of generated names, times single-name searches
(p50/p99), measures in-memory re-screening throughput and scores a labelled evaluation set
(variants of listed names that should match; other names and namesakes with contradicting
evidence that should not), reporting precision and recall at the hit threshold.
"""

from __future__ import annotations

import random
import statistics
import time
import unicodedata
from datetime import date
from typing import Any

from brokerdesk.compliance.screening import HIT_THRESHOLD, Index, ListEntry, Subject

_SYLLABLES = [
    "ka",
    "ro",
    "mi",
    "ta",
    "shi",
    "an",
    "el",
    "os",
    "ur",
    "ba",
    "de",
    "li",
    "na",
    "vo",
    "zar",
    "ek",
    "in",
    "mo",
    "sa",
    "te",
    "ri",
    "hu",
    "go",
    "pe",
    "al",
    "ham",
    "ed",
    "yu",
    "sef",
    "iv",
    "an",
    "ov",
    "che",
    "nko",
    "lo",
    "pez",
    "gar",
    "cia",
    "ngu",
    "yen",
    "wei",
    "zh",
    "ang",
    "kow",
    "ski",
]
_ACCENTS = {"a": "á", "e": "é", "o": "ö", "u": "ü", "i": "í", "n": "ñ"}
_COUNTRIES = ("CY", "GR", "DE", "AE", "NG", "RU", "VN", "BR", "TR", "GB")


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _entry(rng: random.Random, n: int) -> ListEntry:
    parts = [_word(rng) for _ in range(rng.choice((2, 2, 3)))]
    return ListEntry(
        external_id=f"syn-{n}",
        schema="person",
        name=" ".join(parts),
        aliases=(" ".join([*parts[:-1], _word(rng)]),) if rng.random() < 0.2 else (),
        birth_years=(rng.randint(1940, 2000),),
        countries=(rng.choice(_COUNTRIES),),
    )


def _variant(rng: random.Random, name: str) -> str:
    parts = name.split()
    kind = rng.choice(("reorder", "accent", "typo", "drop_middle", "case"))
    if kind == "reorder":
        parts = parts[-1:] + parts[:-1]
    elif kind == "accent":
        parts = ["".join(_ACCENTS.get(c, c) for c in p) for p in parts]
    elif kind == "typo":
        i = rng.randrange(len(parts))
        word = parts[i]
        j = rng.randrange(1, len(word))
        parts[i] = word[:j] + rng.choice("aeiou") + word[j + 1 :]
    elif kind == "drop_middle" and len(parts) > 2:
        parts = [parts[0], parts[-1]]
    else:
        parts = [p.upper() for p in parts]
    return " ".join(parts)


def _strip(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def run(
    *, list_size: int = 100_000, clients: int = 2_000, rescreen_sample: int = 1_000, seed: int = 7
) -> dict[str, Any]:
    """Build, time and evaluate; returns the figures as a JSON-ready dict.

    ``rescreen_clients_per_s``: clients screened against the whole list per second (a full
    re-screen). ``delta_changed_entries_per_s``: changed list entries screened per second
    against an index of all ``clients`` (what a list update costs).
    """
    rng = random.Random(seed)
    entries = [_entry(rng, n) for n in range(list_size)]
    started = time.perf_counter()
    index = Index.build(entries)
    build_s = time.perf_counter() - started

    probes = [Subject(_word(rng) + " " + _word(rng)) for _ in range(200)]
    timings = []
    for subject in probes:
        t = time.perf_counter()
        index.search(subject)
        timings.append((time.perf_counter() - t) * 1000)
    timings.sort()

    population = [Subject(_word(rng) + " " + _word(rng)) for _ in range(clients)]
    sample = population[:rescreen_sample]
    t = time.perf_counter()
    for subject in sample:
        index.search(subject)
    rescreen_s = time.perf_counter() - t

    # Delta re-screening (a list update): changed entries searched in an index of the clients.
    clients_index = Index.build(
        ListEntry(str(i), "person", s.name) for i, s in enumerate(population)
    )
    changed = rng.sample(entries, min(200, len(entries)))
    t = time.perf_counter()
    for entry in changed:
        clients_index.search(Subject(entry.name))
    delta_s = time.perf_counter() - t

    true_pos = false_pos = false_neg = 0
    for _ in range(300):  # should match: variants of listed names with consistent evidence
        target = rng.choice(entries)
        subject = Subject(
            _variant(rng, target.name),
            birth_date=date(target.birth_years[0], 6, 1),
            countries=target.countries,
        )
        found = {index.entries[m.entry_index].external_id for m in index.search(subject)}
        if target.external_id in found:
            true_pos += 1
        else:
            false_neg += 1
    for i in range(300):  # should not match
        if i % 2:
            subject = Subject(_word(rng) + " " + _word(rng), birth_date=date(1990, 1, 1))
        else:  # a namesake whose birth year and country both contradict the listing
            target = rng.choice(entries)
            other = next(c for c in _COUNTRIES if c not in target.countries)
            subject = Subject(
                _strip(target.name),
                birth_date=date(target.birth_years[0] + 25, 1, 1),
                countries=(other,),
            )
        false_pos += 1 if index.search(subject) else 0
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 1.0
    return {
        "list_names": len(index.names),
        "list_entries": list_size,
        "index_build_s": round(build_s, 2),
        "one_name_p50_ms": round(statistics.median(timings), 2),
        "one_name_p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
        "clients": clients,
        "rescreen_sample": len(sample),
        "rescreen_clients_per_s": round(len(sample) / rescreen_s, 1),
        "delta_changed_entries_per_s": round(len(changed) / delta_s, 1),
        "threshold": HIT_THRESHOLD,
        "eval_positives": true_pos + false_neg,
        "eval_negatives": 300,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "note": "synthetic names; in-memory matching only (no database writes)",
    }


def main(argv: list[str] | None = None) -> int:
    """``brokerdesk bench screening [--json] [--list-size N] [--clients N]``."""
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="brokerdesk bench screening")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list-size", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=2_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()
    figures = run(list_size=args.list_size, clients=args.clients)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
