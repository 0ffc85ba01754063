"""Sanctions and PEP screening: list parsing, name normalisation and fuzzy matching.

Pure functions and an in-memory index (no database). Lists come in the OFAC SDN legacy CSV
layout (``sdn.csv`` + ``alt.csv``) or as OpenSanctions FollowTheMoney JSON lines. Names are
normalised (accents and punctuation removed, lower case) and compared token-sorted with
rapidfuzz, so "MUSTERMANN, Max" matches "Max Mustermann"; date of birth and country act as
supporting evidence that raise or lower the score, and every score carries its explanation.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rapidfuzz import fuzz, process

SUBSET_WEIGHT = 0.95  # a name contained in another scores at most 95
PREFILTER = 60  # ratio below which a name is not considered at all
BLOCKING_FROM = 50_000  # lists with this many names are searched through the part index
HIT_THRESHOLD = 85  # possible match: goes to the review queue
STRONG_THRESHOLD = 95  # strong match
_NULL = "-0-"
_DOB = re.compile(r"DOB\s+(?:(\d{1,2})\s+([A-Za-z]{3})\s+)?(\d{4})")
_HONORIFICS = {"mr", "mrs", "ms", "dr", "sheikh", "haji", "al", "el", "bin", "ibn"}


@dataclass(frozen=True)
class ListEntry:
    """One listed person or organisation."""

    external_id: str
    schema: str  # person | entity
    name: str
    aliases: tuple[str, ...] = ()
    birth_years: tuple[int, ...] = ()
    countries: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()


def normalise(name: str) -> str:
    """Lower-case ASCII tokens without accents, punctuation or honorifics, in sorted order."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    tokens = re.sub(r"[^0-9a-zA-Z]+", " ", ascii_only).lower().split()
    kept = [t for t in tokens if t not in _HONORIFICS] or tokens
    return " ".join(sorted(kept))


def _clean(value: str) -> str:
    value = (value or "").strip()
    return "" if value == _NULL else value


def _sdn_name(raw: str, schema: str) -> str:
    if schema == "person" and "," in raw:
        last, first = raw.split(",", 1)
        return f"{first.strip()} {last.strip()}"
    return raw.strip()


def parse_ofac_sdn(sdn_csv: str, alt_csv: str = "") -> list[ListEntry]:
    """Entries from OFAC's legacy ``sdn.csv`` (and aliases from ``alt.csv``)."""
    aliases: dict[str, list[str]] = {}
    for row in csv.reader(io.StringIO(alt_csv)):
        if len(row) >= 4 and _clean(row[3]):
            aliases.setdefault(row[0].strip(), []).append(_clean(row[3]))
    entries = []
    for row in csv.reader(io.StringIO(sdn_csv)):
        if len(row) < 4 or not row[0].strip().isdigit():
            continue
        ent_num, raw_name, sdn_type = row[0].strip(), _clean(row[1]), _clean(row[2]).lower()
        schema = "person" if sdn_type == "individual" else "entity"
        remarks = _clean(row[11]) if len(row) > 11 else ""
        years = tuple(sorted({int(m.group(3)) for m in _DOB.finditer(remarks)}))
        entries.append(
            ListEntry(
                external_id=f"ofac-{ent_num}",
                schema=schema,
                name=_sdn_name(raw_name, schema),
                aliases=tuple(_sdn_name(a, schema) for a in aliases.get(ent_num, [])),
                birth_years=years,
                programs=tuple(p.strip() for p in _clean(row[3]).split(";") if p.strip()),
            )
        )
    return entries


def parse_ftm(lines: Iterable[str]) -> list[ListEntry]:
    """Entries from OpenSanctions FollowTheMoney JSON lines (Person, Organization, Company)."""
    entries = []
    for line in lines:
        if not line.strip():
            continue
        obj: dict[str, Any] = json.loads(line)
        schema = obj.get("schema", "")
        if schema not in ("Person", "Organization", "Company", "LegalEntity"):
            continue
        props: dict[str, list[str]] = obj.get("properties", {})
        names = props.get("name", [])
        if not names:
            continue
        years = set()
        for value in props.get("birthDate", []):
            if value[:4].isdigit():
                years.add(int(value[:4]))
        countries = {
            c.upper()
            for key in ("country", "nationality", "citizenship", "jurisdiction")
            for c in props.get(key, [])
            if len(c) == 2
        }
        entries.append(
            ListEntry(
                external_id=str(obj["id"]),
                schema="person" if schema == "Person" else "entity",
                name=names[0],
                aliases=tuple(names[1:] + props.get("alias", []) + props.get("weakAlias", [])),
                birth_years=tuple(sorted(years)),
                countries=tuple(sorted(countries)),
                programs=tuple(props.get("program", []) + props.get("topics", [])),
            )
        )
    return entries


@dataclass(frozen=True)
class Subject:
    """Who is screened: a client's name and the evidence that supports or weakens a match."""

    name: str
    schema: str = "person"
    birth_date: date | None = None
    countries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """A possible match with its score (0-100) and the reasons behind it."""

    entry_index: int
    matched_name: str
    score: int
    name_score: float
    explanation: tuple[str, ...]


def _skeleton(token: str) -> str:
    """A name part's consonant skeleton: the spelling-variant key of transliterated names.

    Vowels, h, w and y go, look-alike sounds merge (ph→f, ck/c/q→k, z→s, v→f, j→g, dt→t) and
    doubled letters collapse: "mohammed", "muhammad" and "mohamad" all give "mmt".
    """
    text = token.replace("ph", "f").replace("ck", "k").replace("sch", "s").replace("sh", "s")
    text = text.translate(_SOUNDS)
    collapsed = [c for i, c in enumerate(text) if i == 0 or c != text[i - 1]]
    return "".join(c for c in collapsed if c not in "aeiouhwy")


_SOUNDS = str.maketrans({"c": "k", "q": "k", "z": "s", "v": "f", "j": "g", "d": "t"})


def blocking_keys(token: str, *, prefix: bool = True) -> set[str]:
    """The keys under which a name part is found: itself, itself with any one letter left out
    (so one typo, extra or missing letter on either side still meets), its first five letters
    (a longer form of the name) and its consonant skeleton (a transliteration)."""
    keys = {token}
    if len(token) >= 3:
        keys.update(token[:i] + token[i + 1 :] for i in range(len(token)))
    if prefix and len(token) >= 5:
        keys.add("^" + token[:5])  # "smith" meets "smithson"
    skeleton = _skeleton(token)
    if len(skeleton) >= 3:
        keys.add("#" + skeleton)
    return keys


@dataclass
class Index:
    """Normalised names of one or more lists, ready for fast fuzzy search.

    Large lists are searched through their name parts: each part is filed under its
    ``blocking_keys``, a query part looks its own keys up, and only the names holding a part
    found that way are scored — a handful of dictionary lookups instead of a scan of every
    part, so one name costs about the same against a million names as against thousands.
    Blocking finds parts one edit apart (a typo, a letter more or less) or with the same
    consonant skeleton (transliterations); scoring then decides with the whole name.
    """

    entries: list[ListEntry] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # names[i] belongs to entries[owners[i]]
    originals: list[str] = field(default_factory=list)
    postings: dict[str, list[int]] = field(default_factory=dict)  # name part -> names[i]
    keys: dict[str, list[str]] = field(default_factory=dict)  # blocking key -> name parts
    singles: dict[str, list[int]] = field(default_factory=dict)  # one-part names by their part
    blocking_from: int = BLOCKING_FROM

    @classmethod
    def build(cls, entries: Iterable[ListEntry], *, blocking_from: int = BLOCKING_FROM) -> Index:
        """Index every name and alias of ``entries``, and each name part for blocking."""
        index = cls(blocking_from=blocking_from)
        for entry in entries:
            position = len(index.entries)
            index.entries.append(entry)
            for name in (entry.name, *entry.aliases):
                normal = normalise(name)
                if normal:
                    for token in set(normal.split()):
                        index.postings.setdefault(token, []).append(len(index.names))
                    index.names.append(normal)
                    if " " not in normal:
                        index.singles.setdefault(normal, []).append(len(index.names) - 1)
                    index.owners.append(position)
                    index.originals.append(name)
        if len(index.names) >= blocking_from:
            for token in index.postings:
                for key in blocking_keys(token):
                    index.keys.setdefault(key, []).append(token)
        return index

    def similar_parts(self, probe: str, *, prefix: bool = True) -> set[str]:
        """The list's name parts that ``probe`` meets through a blocking key (``prefix``:
        also the parts sharing its first five letters)."""
        found: set[str] = set()
        for key in blocking_keys(probe, prefix=prefix):
            found.update(self.keys.get(key, ()))
        return found

    def _candidates(self, query: str) -> list[int]:
        """Blocking: names meeting at least two of the query's parts (one for a one-part name
        on either side), or meeting two of its parts written together ("Abdul Rahman"
        against "Abdulrahman"). A name sharing only a common first name is not scored."""
        tokens = query.split()
        usable = [t for t in dict.fromkeys(tokens) if len(t) >= 3 or len(tokens) == 1]
        parts = [self.similar_parts(token) for token in usable]
        if len(parts) == 1:
            chosen = self._holders(parts[0], self.postings)
        else:
            held = [self._holders(found, self.postings) for found in parts]
            chosen = set().union(*(a & b for a, b in itertools.combinations(held, 2)))
            for found in parts:
                chosen |= self._holders(found, self.singles)
        if 1 < len(tokens) <= 4:
            for a, b in itertools.permutations(tokens, 2):
                # two parts written together: a longer part sharing their start is no evidence
                chosen |= self._holders(self.similar_parts(a + b, prefix=False), self.postings)
        return sorted(chosen)

    @staticmethod
    def _holders(found: set[str], postings: dict[str, list[int]]) -> set[int]:
        """The names (of ``postings``) holding any of the name parts ``found``."""
        holders: set[int] = set()
        for part in found:
            holders.update(postings.get(part, ()))
        return holders

    def search(
        self, subject: Subject, *, threshold: int = HIT_THRESHOLD, limit: int = 20
    ) -> list[Match]:
        """Entries whose best name scores at least ``threshold`` after evidence, best first."""
        query = normalise(subject.name)
        if not query or not self.names:
            return []
        # Names are stored token-sorted, so a plain ratio is the token-sort ratio (and faster).
        # A low prefilter keeps names that contain the query with extra parts (a middle name),
        # which are then scored as subsets.
        scores: dict[int, float] = {}
        positions: Sequence[int]
        if len(self.names) >= self.blocking_from:
            positions = self._candidates(query)
            pool = [self.names[p] for p in positions]
        else:
            positions, pool = range(len(self.names)), self.names
        for candidate, score, found in process.extract(
            query, pool, scorer=fuzz.ratio, score_cutoff=PREFILTER, limit=limit * 10
        ):
            position = positions[found]
            if " " in query and " " in candidate:
                score = max(score, fuzz.token_set_ratio(query, candidate) * SUBSET_WEIGHT)
            scores[position] = score
        best: dict[int, Match] = {}
        for position, name_score in scores.items():
            owner = self.owners[position]
            match = explain(
                self.entries[owner], owner, self.originals[position], name_score, subject
            )
            if match.score >= threshold and (owner not in best or match.score > best[owner].score):
                best[owner] = match
        return sorted(best.values(), key=lambda m: (-m.score, m.entry_index))[:limit]


def explain(
    entry: ListEntry, owner: int, matched: str, name_score: float, subject: Subject
) -> Match:
    """Score a name match with the supporting evidence, and say why."""
    score = name_score
    why = [f"name {name_score:.0f}% similar to {matched!r}"]
    if entry.schema != subject.schema:
        score -= 20
        why.append(f"listed as {entry.schema}, screened as {subject.schema} (-20)")
    if subject.birth_date and entry.birth_years:
        if subject.birth_date.year in entry.birth_years:
            score += 5
            why.append(f"birth year {subject.birth_date.year} matches (+5)")
        elif all(abs(subject.birth_date.year - y) > 1 for y in entry.birth_years):
            score -= 15
            why.append(f"birth year differs from {list(entry.birth_years)} (-15)")
    if subject.countries and entry.countries:
        if set(subject.countries) & set(entry.countries):
            why.append("country matches")
        else:
            score -= 10
            why.append(f"countries differ ({list(entry.countries)}) (-10)")
    final = max(0, min(100, round(score)))
    return Match(owner, matched, final, name_score, tuple(why))


def iter_lines(text: str) -> Iterator[str]:
    """The lines of a JSON-lines document."""
    yield from io.StringIO(text)
