"""Back-office pages and the API of automations: who may read, who may edit, the editor."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from brokerdesk.automations import services
from brokerdesk.automations.models import Rule, Run, RunStatus
from brokerdesk.trading.platform.port import PlatformConnectionError
from tests.automations.conftest import rule
from tests.automations.test_runs import OPEN_ACCOUNT, kyc_approved
from tests.clients.factories import individual, user

pytestmark = pytest.mark.django_db

NOTIFY = [{"action": "notify", "params": {"kind": "deposit_received"}}]


def browser(*roles: str) -> tuple[Client, Any]:
    account = user(*roles)
    web = Client()
    web.force_login(account)
    return web, account


def failed_run(platform: Any) -> Run:
    from brokerdesk.compliance import services as compliance

    client = individual()
    for step in ("under_verification", "approved"):
        compliance.transition_kyc(client.pk, step, by="system:test", reason="t", provider="sumsub")
    rule("kyc.approved", [OPEN_ACCOUNT], name="Open accounts")
    platform.fail_with = PlatformConnectionError("manager link down")
    [run] = services.apply_rules(kyc_approved(client.pk))
    return run


def test_every_staff_role_reads_the_rules_but_clients_and_strangers_do_not():
    rule("deposit.confirmed", NOTIFY, name="Thank depositors")
    auditor, _ = browser("auditor")
    page = auditor.get("/backoffice/automations/")
    assert page.status_code == 200 and "Thank depositors" in page.content.decode()
    assert "New rule" not in page.content.decode()  # read only
    plain, _ = browser()
    assert plain.get("/backoffice/automations/").status_code == 403
    assert Client().get("/backoffice/automations/").status_code == 302  # to sign in


def test_only_an_administrator_opens_the_editor():
    saved = rule("deposit.confirmed", NOTIFY, name="Thank depositors")
    finance, _ = browser("finance")
    assert finance.get("/backoffice/automations/new/").status_code == 403
    view = finance.get(f"/backoffice/automations/{saved.id}/")
    assert view.status_code == 200 and "Only an administrator" in view.content.decode()
    posted = finance.post(f"/backoffice/automations/{saved.id}/", {"name": "Hijacked"})
    assert posted.status_code == 403
    assert Rule.objects.get().name == "Thank depositors"
    admin, _ = browser("admin")
    editor = admin.get(f"/backoffice/automations/{saved.id}/")
    assert editor.status_code == 200 and 'name="trigger"' in editor.content.decode()


def editor_form(**rows: str) -> dict[str, str]:
    form = {
        "name": "Big deposits from Germany",
        "trigger": "deposit.confirmed",
        "enabled": "on",
        "cond-a1-field": "client.country",
        "cond-a1-op": "in",
        "cond-a1-value": "de, at",
        "cond-b2-field": "event.amount",
        "cond-b2-op": "gte",
        "cond-b2-value": "1000000",
        "cond-c3-field": "",
        "cond-c3-op": "eq",
        "cond-c3-value": "",
        "act-x1-action": "open_edd_ticket",
        "act-x1-p-subject": "Large deposit",
        "act-x1-p-queue": "compliance",
        "act-x1-p-priority": "high",
    }
    form.update(rows)
    return form


def test_the_editor_saves_typed_conditions_and_actions_from_the_form():
    admin, account = browser("admin")
    response = admin.post("/backoffice/automations/new/", editor_form())
    assert response.status_code == 302
    saved = Rule.objects.get()
    assert saved.conditions == [
        {"field": "client.country", "op": "in", "value": ["DE", "AT"]},
        {"field": "event.amount", "op": "gte", "value": 1_000_000},
    ]
    assert saved.actions == [
        {
            "action": "open_edd_ticket",
            "params": {"subject": "Large deposit", "queue": "compliance", "priority": "high"},
        }
    ]
    assert saved.created_by == f"user:{account.pk}" and saved.enabled


def test_a_bad_value_is_shown_on_its_row_and_nothing_is_saved():
    admin, _ = browser("admin")
    response = admin.post("/backoffice/automations/new/", editor_form(**{"cond-b2-value": "1.5"}))
    html = response.content.decode()
    assert response.status_code == 400 and Rule.objects.count() == 0
    row = html.split('data-row="b2"', 1)[1].split("</fieldset>", 1)[0]
    assert "must be a whole number" in row
    assert "must be a whole number" not in html.split('data-row="b2"', 1)[0]
    assert 'value="1.5"' in row  # what was typed is kept


def test_the_editor_fragments_add_rows_and_the_chosen_actions_parameters():
    admin, _ = browser("admin")
    condition = admin.get("/backoffice/automations/editor/condition/")
    assert condition.status_code == 200 and 'name="cond-' in condition.content.decode()
    params = admin.get(
        "/backoffice/automations/editor/action/",
        {"row": "r9", "act-r9-action": "create_trading_account"},
    ).content.decode()
    for name in ("server", "group", "leverage", "currency"):
        assert f'name="act-r9-p-{name}"' in params
    fields = admin.get("/backoffice/automations/editor/fields/", {"trigger": "deposit.confirmed"})
    assert 'value="event.amount"' in fields.content.decode()
    assert 'value="client.risk_score"' in fields.content.decode()
    support, _ = browser("support")
    assert support.get("/backoffice/automations/editor/condition/").status_code == 403


def test_an_administrator_switches_a_rule_off():
    saved = rule("deposit.confirmed", NOTIFY)
    admin, _ = browser("admin")
    admin.post(f"/backoffice/automations/{saved.id}/toggle/", {"enabled": "0"})
    assert Rule.objects.get().enabled is False
    support, _ = browser("support")
    assert (
        support.post(f"/backoffice/automations/{saved.id}/toggle/", {"enabled": "1"}).status_code
        == 403
    )


def test_the_runs_log_and_the_exceptions_queue_show_the_failed_run(platform):
    run = failed_run(platform)
    auditor, _ = browser("auditor")
    assert str(run.id) in auditor.get("/backoffice/automations/runs/").content.decode()
    assert str(run.id) in auditor.get("/backoffice/automations/exceptions/").content.decode()
    detail = auditor.get(f"/backoffice/automations/runs/{run.id}/").content.decode()
    assert "manager link down" in detail and "dealing" in detail  # who may override
    assert "Mark handled" not in detail  # an auditor may not resolve it


def test_a_dealer_resolves_the_run_from_its_page_and_others_are_refused(platform):
    run = failed_run(platform)
    partner, _ = browser("partner_manager")
    refused = partner.post(f"/backoffice/automations/runs/{run.id}/handle/", {"note": "x"})
    assert refused.status_code == 403
    dealer, _ = browser("dealing")
    assert "Mark handled" in dealer.get(f"/backoffice/automations/runs/{run.id}/").content.decode()
    dealer.post(f"/backoffice/automations/runs/{run.id}/handle/", {"note": "Opened by hand."})
    assert Run.objects.get(pk=run.id).status == RunStatus.HANDLED


def test_a_retry_from_the_page_finishes_the_run(platform):
    run = failed_run(platform)
    platform.fail_with = None
    dealer, _ = browser("dealing")
    dealer.post(f"/backoffice/automations/runs/{run.id}/retry/")
    assert Run.objects.get(pk=run.id).status == RunStatus.SUCCEEDED


def test_the_api_creates_rules_for_administrators_with_clear_errors():
    admin, _ = browser("admin")
    body = {"name": "API rule", "trigger": "deposit.confirmed", "actions": NOTIFY}
    created = admin.post("/api/v1/automations/rules", json.dumps(body), "application/json")
    assert created.status_code == 201 and created.json()["version"] == 1
    bad = dict(body, conditions=[{"field": "event.amount", "op": "gt", "value": "ten"}])
    refused = admin.post("/api/v1/automations/rules", json.dumps(bad), "application/json")
    assert refused.status_code == 400 and refused.json()["field"] == "conditions[0].value"
    finance, _ = browser("finance")
    assert (
        finance.post("/api/v1/automations/rules", json.dumps(body), "application/json").status_code
        == 403
    )
    assert [r["name"] for r in finance.get("/api/v1/automations/rules").json()] == ["API rule"]
    catalogue = finance.get("/api/v1/automations/catalogue").json()
    assert "risk_score" in catalogue["facts"] and "route_withdrawal" in catalogue["actions"]
    assert Client().get("/api/v1/automations/rules").status_code == 401


def test_the_api_lists_exceptions_and_resolves_them(platform):
    run = failed_run(platform)
    dealer, _ = browser("dealing")
    assert [r["id"] for r in dealer.get("/api/v1/automations/exceptions").json()] == [str(run.id)]
    no_note = dealer.post(
        f"/api/v1/automations/runs/{run.id}/handle", json.dumps({"note": ""}), "application/json"
    )
    assert no_note.status_code == 400 and no_note.json()["field"] == "note"
    done = dealer.post(
        f"/api/v1/automations/runs/{run.id}/handle",
        json.dumps({"note": "Done by hand."}),
        "application/json",
    )
    assert done.status_code == 200 and done.json()["status"] == "handled"
    assert dealer.get("/api/v1/automations/exceptions").json() == []
