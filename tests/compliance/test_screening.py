"""Sanctions screening: list loading, fuzzy matching with evidence, hits, flags and cases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from brokerdesk.compliance import queries, screening, services
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.models import SanctionsEntry, ScreeningHit
from brokerdesk.compliance.queries import may
from brokerdesk.core import clock
from brokerdesk.core.errors import IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import OutboxEvent
from tests.clients.factories import corporate, individual, user
from tests.compliance.test_kyc import bring_to

pytestmark = pytest.mark.django_db

# Fictional names in OFAC's legacy sdn.csv / alt.csv layout.
_N = "-0- "  # OFAC's null marker
SDN = "\n".join(
    [
        f'9001,"KARVELOS, Dimitrios","individual","SDGT",{_N},{_N},{_N},{_N},{_N},{_N},{_N},'
        '"DOB 12 Jan 1971; POB Athens."',
        f'9002,"NORTHWIND MARITIME HOLDINGS LTD",{_N},"IRAN",' + ",".join([_N] * 8),
        f'9003,"OKONKWO-BELL, Adaeze Chioma","individual","GLOMAG",{",".join([_N] * 7)},'
        '"DOB 1980."',
    ]
)
ALT = f'9001,501,"aka","CARVELOS, Dimitri",{_N}\n'
FTM = "\n".join(
    json.dumps(e)
    for e in [
        {
            "id": "os-1",
            "schema": "Person",
            "properties": {
                "name": ["Muhammad Tariq Al-Rashidi"],
                "alias": ["Mohammed Tarik Rashidi"],
                "birthDate": ["1966-04-02"],
                "country": ["ae"],
            },
        },
        {
            "id": "os-2",
            "schema": "Person",
            "properties": {"name": ["Elena Sorokina"], "birthDate": ["1955"], "country": ["ru"]},
        },
        {"id": "os-3", "schema": "Vessel", "properties": {"name": ["Sea Breeze"]}},
    ]
)


def load_ofac(**kw):
    return services.load_sanctions_list(
        "ofac_sdn", fmt="ofac_csv", content=SDN, alt_content=ALT, by="system:test", **kw
    )


def test_parsing_ofac_reads_names_in_order_aliases_and_birth_years():
    entries = screening.parse_ofac_sdn(SDN, ALT)

    assert [e.name for e in entries] == [
        "Dimitrios KARVELOS",
        "NORTHWIND MARITIME HOLDINGS LTD",
        "Adaeze Chioma OKONKWO-BELL",
    ]
    assert entries[0].aliases == ("Dimitri CARVELOS",)
    assert (entries[0].birth_years, entries[1].schema) == ((1971,), "entity")


def test_a_client_matching_a_listed_name_is_flagged_with_an_explained_hit_and_a_case():
    client = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )
    bring_to(client.pk, KycState.APPROVED)

    list_row, new_hits = load_ofac()  # a new list re-screens every client

    assert (list_row.entry_count, new_hits) == (3, 1)
    [hit] = queries.hits_of(client.pk)
    assert hit.score == 100 and hit.list_source == "ofac_sdn"
    assert "birth year 1971 matches (+5)" in hit.explanation
    assert queries.has_open_flag(client.pk, "sanctions_hit")
    assert may(client.pk, "withdraw").reason_code == "flag_sanctions_hit"
    [case] = queries.cases(client_id=client.pk)
    assert (case.kind, case.status) == ("sanctions", "open")
    assert OutboxEvent.objects.filter(type="compliance.screening_hit").count() == 1


@pytest.mark.parametrize(
    "name",
    [("Karvelos", "Dimitrios"), ("Dimítrios", "Kárvelos"), ("Dimitri", "Carvelos")],
    ids=["reversed order", "accents", "alias"],
)
def test_name_order_accents_and_aliases_still_match(name):
    load_ofac()
    first, last = name
    client = individual(first_name=first, last_name=last, date_of_birth=date(1971, 5, 5))

    assert len(services.screen_client(client.pk)) == 1


def test_different_people_and_contradicting_evidence_do_not_match():
    services.load_sanctions_list("opensanctions", fmt="ftm_json", content=FTM, by="system:test")
    namesake = individual(
        first_name="Elena", last_name="Sorokina", date_of_birth=date(1992, 3, 3), country="CY"
    )
    stranger = individual(first_name="Maria", last_name="Ioannou")

    assert services.screen_client(stranger.pk) == []
    assert services.screen_client(namesake.pk) == []  # name 100, birth year -15, country -10
    index, _ = services._active_index()
    [near] = index.search(
        screening.Subject("Elena Sorokina", birth_date=date(1992, 3, 3), countries=("CY",)),
        threshold=0,
    )
    assert near.score == 75
    assert "countries differ (['RU']) (-10)" in near.explanation


def test_transliterated_aliases_from_opensanctions_match():
    services.load_sanctions_list("opensanctions", fmt="ftm_json", content=FTM, by="system:test")
    client = individual(
        first_name="Mohammed",
        last_name="Tariq Rashidi",
        date_of_birth=date(1966, 4, 2),
        nationality="AE",
    )

    [hit] = services.screen_client(client.pk)
    assert hit.entry_external_id == "os-1" and hit.score >= 90


def test_companies_are_screened_against_listed_entities():
    load_ofac()
    company = corporate(company_name="Northwind Maritime Holdings Ltd.")
    assert len(services.screen_client(company.pk)) == 1


def test_loading_the_same_list_twice_changes_nothing_and_a_new_version_replaces_it():
    load_ofac()
    _, hits = load_ofac()
    assert hits == 0
    assert SanctionsEntry.objects.count() == 3

    services.load_sanctions_list(
        "ofac_sdn",
        fmt="ofac_csv",
        content=SDN.splitlines()[0] + "\n",
        by="system:test",
    )
    index, _ = services._active_index()
    assert [e.external_id for e in index.entries] == ["ofac-9001"]


def test_a_dismissed_hit_clears_the_flag_and_closes_the_case_as_a_false_positive():
    officer = user("compliance_officer")
    load_ofac()
    client = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )
    [hit] = services.screen_client(client.pk)

    with pytest.raises(PermissionDenied):
        services.resolve_hit(hit.id, confirmed=False, by=user("support"), note="not him")
    services.resolve_hit(hit.id, confirmed=False, by=officer, note="different passport number")

    assert not queries.has_open_flag(client.pk, "sanctions_hit")
    [case] = queries.cases(client_id=client.pk)
    assert (case.status, case.outcome) == ("closed", "false_positive")
    assert services.screen_client(client.pk) == []  # a reviewed match is not raised again
    with pytest.raises(IllegalTransition):
        services.resolve_hit(hit.id, confirmed=True, by=officer, note="changed my mind")


def test_a_confirmed_hit_keeps_the_client_frozen():
    load_ofac()
    client = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )
    [hit] = services.screen_client(client.pk)

    services.resolve_hit(
        hit.id, confirmed=True, by=user("compliance_officer"), note="passport matches"
    )

    assert queries.has_open_flag(client.pk, "sanctions_hit")
    assert ScreeningHit.objects.get(pk=hit.id).status == "confirmed"
    assert "Match confirmed" in queries.cases(client_id=client.pk)[0].notes[-1][1]


def test_clients_are_rescreened_when_their_rule_set_says_so():
    load_ofac()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with clock.frozen(start):
        cyprus = individual()  # every 30 days
        seychelles = individual(jurisdiction="fsa-sc", country="ZA", phone="")  # every 90 days
        assert services.rescreen_due() == 2
        assert services.rescreen_due() == 0
    with clock.frozen(start + timedelta(days=31)):
        assert services.rescreen_due() == 1
    assert queries.hits_of(cyprus.pk) == queries.hits_of(seychelles.pk) == []


def test_an_unknown_format_or_empty_list_is_refused():
    with pytest.raises(ValidationError):
        services.load_sanctions_list("x", fmt="xml", content=SDN, by="system:test")
    with pytest.raises(ValidationError) as error:
        services.load_sanctions_list("x", fmt="ofac_csv", content="", by="system:test")
    assert error.value.code == "empty_list"


def test_blocking_by_name_parts_finds_the_listed_person_behind_each_variant():
    """Blocking keeps the matches a full scan makes for spelling variants of a listed name
    (reordered, accented, a typo, a middle name dropped, another case) and invents none."""
    import random

    from brokerdesk.compliance.bench import _entry, _variant

    rng = random.Random(3)
    entries = [_entry(rng, n) for n in range(3_000)]
    full = screening.Index.build(entries, blocking_from=10**9)
    blocked = screening.Index.build(entries, blocking_from=0)
    targets = [rng.randrange(len(entries)) for _ in range(100)]
    kept = 0

    for target in targets:
        subject = screening.Subject(_variant(rng, entries[target].name))
        scanned = {m.entry_index: m.score for m in full.search(subject)}
        found = {m.entry_index: m.score for m in blocked.search(subject)}
        if target in scanned:
            assert found.get(target) == scanned[target], subject.name
        assert found.items() <= scanned.items(), subject.name  # nothing a full scan would not say
        kept += target in found
    assert kept >= 95  # the full scan itself misses a few typos that reorder the parts
    for name in ("Karvelos Dimitrios", "Abuzayd Ahmad", "Xu"):
        subject = screening.Subject(name)
        assert {m.entry_index for m in blocked.search(subject)} <= {
            m.entry_index for m in full.search(subject)
        }


def test_a_new_list_version_screens_only_its_new_entries_against_every_client():
    from brokerdesk.compliance.models import KycCase

    others = [individual() for _ in range(4)]
    suspect = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )
    first_version = "\n".join(SDN.splitlines()[1:]) + "\n"  # without Karvelos
    services.load_sanctions_list("ofac_sdn", fmt="ofac_csv", content=first_version, by="t:1")

    _, new_hits = load_ofac()  # adds Karvelos (and his alias)

    assert new_hits == 1
    [hit] = queries.hits_of(suspect.pk)
    assert hit.entry_external_id == "ofac-9001" and hit.score == 100
    assert "birth year 1971 matches (+5)" in hit.explanation
    assert not KycCase.objects.filter(last_screened_at__isnull=False).exists()  # delta only
    assert all(queries.hits_of(c.pk) == [] for c in others)


def test_a_dismissed_match_is_not_raised_again_by_a_later_list_version():
    [individual() for _ in range(3)]
    suspect = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )
    load_ofac()
    [hit] = queries.hits_of(suspect.pk)
    services.resolve_hit(hit.id, confirmed=False, by=user("compliance_officer"), note="other man")

    extra = f'9100,"HALVORSEN, Ingrid","individual","SDGT",{",".join([_N] * 8)}\n'
    _, new_hits = services.load_sanctions_list(
        "ofac_sdn", fmt="ofac_csv", content=SDN + "\n" + extra, alt_content=ALT, by="t:2"
    )

    assert new_hits == 0
    assert services.screen_client(suspect.pk) == []
    assert not queries.has_open_flag(suspect.pk, "sanctions_hit")


def test_blocking_meets_transliterations_typos_and_joined_parts():
    listed = [
        screening.ListEntry("e1", "person", "Mohammed Abdul Rahman"),
        screening.ListEntry("e2", "person", "Arnold Schwarzenegger"),
        screening.ListEntry("e3", "person", "Dimitrios Karvelos"),
    ]
    index = screening.Index.build(listed, blocking_from=0)

    def found(name: str) -> list[str]:
        return [
            index.entries[m.entry_index].external_id
            for m in index.search(screening.Subject(name), threshold=80)
        ]

    assert found("Muhammad Abdul Rahman") == ["e1"]  # another transliteration
    assert index._candidates(screening.normalise("Mohamed Abdulrahman")) == [0]  # joined parts
    assert found("Arnold Shwarzenegger") == ["e2"]  # a letter missing
    assert found("Dimitrjos Karvelos") == ["e3"]  # a typo
    assert found("Kim Jong") == []


def test_a_name_part_is_filed_under_its_one_letter_deletions_and_its_skeleton():
    keys = screening.blocking_keys("karvelos")
    assert {"karvelos", "arvelos", "karvelo", "#krfls"} <= keys
    assert screening._skeleton("mohammed") == screening._skeleton("muhammad") == "mmt"
