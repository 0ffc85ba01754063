"""The portal "Bonuses" page, the back-office campaign pages and the API: who may see and do
what, and that the pages show the real figures."""

from __future__ import annotations

import pytest

from brokerdesk.bonuses import services
from brokerdesk.bonuses.models import Bonus, Campaign, CampaignStatus
from tests.bonuses.conftest import FINANCE, bucket, campaign, client
from tests.clients.factories import user

pytestmark = pytest.mark.django_db


def client_user():  # type: ignore[no-untyped-def]
    """A signed-in-able user with a client record (KYC approved)."""
    account = user()
    return account, client(user=account)


def test_the_portal_page_shows_my_bonus_and_its_history_not_another_clients(client):
    me, my_id = client_user()
    _, other_id = client_user()
    c = campaign(trigger="manual", fixed_amount=2_500, name="Spring credit")
    services.grant_manual(
        campaign_id=c.id,
        client_id=my_id,
        amount=2_500,
        reason="goodwill",
        by=FINANCE,
        request_key="mine",
    )
    o = campaign(trigger="manual", fixed_amount=999, name="Secret offer")
    services.grant_manual(
        campaign_id=o.id,
        client_id=other_id,
        amount=999,
        reason="x",
        by=FINANCE,
        request_key="theirs",
    )

    client.force_login(me)
    page = client.get("/portal/bonuses/")

    body = page.content.decode()
    assert page.status_code == 200
    assert "Spring credit" in body and "25.00" in body and "goodwill" in body
    assert "Secret offer" not in body


def test_a_client_enters_a_promo_code_and_gets_the_bonus(client):
    me, my_id = client_user()
    campaign(trigger="promo", promo_code="SPRING50", fixed_amount=5_000, percent_bps=0)
    client.force_login(me)

    bad = client.post("/portal/bonuses/", {"code": "NOPE"})
    good = client.post("/portal/bonuses/", {"code": "spring50"})

    assert bad.status_code == 400 and "not valid" in bad.content.decode()
    assert good.status_code == 302 and bucket(my_id, "bonus") == 5_000


def test_the_portal_page_asks_anonymous_visitors_to_sign_in(client):
    response = client.get("/portal/bonuses/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    ("role", "status"),
    [("finance", 200), ("auditor", 200), ("admin", 200), ("support", 403), ("dealing", 403)],
)
def test_the_campaigns_page_is_for_finance_admin_and_auditors(client, role, status):
    campaign(name="Welcome 100")
    client.force_login(user(role))
    response = client.get("/backoffice/bonuses/")
    grants = client.get("/backoffice/bonuses/grants/")
    assert response.status_code == status and grants.status_code == status
    if status == 200:
        assert "Welcome 100" in response.content.decode()
        can_create = "Create the campaign" in response.content.decode()
        assert can_create == (role != "auditor")


def test_finance_creates_and_pauses_a_campaign_from_the_page(client):
    client.force_login(user("finance"))
    response = client.post(
        "/backoffice/bonuses/new/",
        {
            "code": "summer",
            "name": "Summer 30 %",
            "kind": "credit",
            "trigger": "deposit",
            "currency": "USD",
            "percent": "30",
            "max_per_grant": "300.00",
            "deposit_sequence": "any",
            "withdrawal_forfeit": "full",
            "unlock_per_lot": "5",
            "kyc_states": "approved",
        },
    )
    assert response.status_code == 302
    created = Campaign.objects.get(code="summer")
    assert created.percent_bps == 3_000 and created.max_per_grant == 30_000
    assert created.unlock_per_lot == 500 and created.kyc_states == ["approved"]

    paused = client.post(
        f"/backoffice/bonuses/{created.id}/status/", {"status": "paused", "reason": "budget review"}
    )
    created.refresh_from_db()
    assert paused.status_code == 302 and created.status == CampaignStatus.PAUSED


def test_an_auditor_cannot_create_grant_or_forfeit(client):
    _, alice = client_user()
    c = campaign(trigger="manual", fixed_amount=1_000)
    client.force_login(user("auditor"))
    created = client.post("/backoffice/bonuses/new/", {"code": "x", "name": "X"})
    granted = client.post(
        "/backoffice/bonuses/grants/new/",
        {
            "campaign": str(c.id),
            "client_id": str(alice),
            "amount": "10",
            "reason": "x",
            "request_key": "k",
        },
    )
    assert created.status_code == 403 and granted.status_code == 403
    assert Bonus.objects.count() == 0


def test_finance_grants_and_forfeits_by_hand_with_a_reason(client):
    _, alice = client_user()
    c = campaign(trigger="manual", fixed_amount=1_000)
    client.force_login(user("finance"))
    no_reason = client.post(
        "/backoffice/bonuses/grants/new/",
        {
            "campaign": str(c.id),
            "client_id": str(alice),
            "amount": "10.00",
            "reason": "",
            "request_key": "k1",
        },
    )
    granted = client.post(
        "/backoffice/bonuses/grants/new/",
        {
            "campaign": str(c.id),
            "client_id": str(alice),
            "amount": "10.00",
            "reason": "service recovery",
            "request_key": "k1",
        },
    )
    assert no_reason.status_code == 400 and granted.status_code == 302
    bonus = Bonus.objects.get()
    assert bonus.amount == 1_000 and bucket(alice, "bonus") == 1_000

    detail = client.get(f"/backoffice/bonuses/grant/{bonus.id}/")
    assert detail.status_code == 200 and "service recovery" in detail.content.decode()
    forfeited = client.post(
        f"/backoffice/bonuses/grant/{bonus.id}/forfeit/",
        {"reason": "duplicate account", "request_key": "f1"},
    )
    assert forfeited.status_code == 302 and bucket(alice, "bonus") == 0
    listed = client.get("/backoffice/bonuses/grants/", {"status": "forfeited"})
    assert str(alice) in listed.content.decode()


def test_the_api_gives_a_client_only_their_own_bonuses_and_the_preview(client):
    me, my_id = client_user()
    _, other_id = client_user()
    c = campaign(trigger="manual", fixed_amount=4_000)
    for cid, key in ((my_id, "a"), (other_id, "b")):
        services.grant_manual(
            campaign_id=c.id, client_id=cid, amount=4_000, reason="x", by=FINANCE, request_key=key
        )
    client.force_login(me)
    mine = client.get("/api/v1/bonuses/me").json()
    preview = client.get(
        "/api/v1/bonuses/me/forfeiture-preview", {"currency": "USD", "amount": 100}
    ).json()
    assert [b["client_id"] for b in mine] == [str(my_id)]
    assert preview["forfeited"] == 4_000
    assert client.get("/api/v1/bonuses/grants").status_code == 403


def test_the_api_lets_finance_create_a_campaign_and_grant_with_a_reason(client):
    _, alice = client_user()
    client.force_login(user("finance"))
    made = client.post(
        "/api/v1/bonuses/campaigns",
        {
            "code": "api-camp",
            "name": "API",
            "kind": "credit",
            "trigger": "manual",
            "currency": "USD",
            "terms": {"fixed_amount": 700},
        },
        content_type="application/json",
    )
    campaign_id = made.json()["id"]
    bad = client.post(
        "/api/v1/bonuses/grants",
        {
            "campaign_id": campaign_id,
            "client_id": str(alice),
            "amount": 700,
            "reason": "",
            "request_key": "r",
        },
        content_type="application/json",
    )
    good = client.post(
        "/api/v1/bonuses/grants",
        {
            "campaign_id": campaign_id,
            "client_id": str(alice),
            "amount": 700,
            "reason": "ok",
            "request_key": "r",
        },
        content_type="application/json",
    )
    assert made.status_code == 201
    assert bad.status_code == 400 and bad.json()["field"] == "reason"
    assert good.status_code == 200 and good.json()["amount"] == 700
    client.force_login(user("auditor"))
    assert client.get("/api/v1/bonuses/grants").status_code == 200
    assert client.post(
        "/api/v1/bonuses/campaigns", {}, content_type="application/json"
    ).status_code in (403, 422)


def test_the_portal_preview_says_what_a_withdrawal_would_remove(client):
    me, my_id = client_user()
    c = campaign(trigger="manual", fixed_amount=3_000)
    services.grant_manual(
        campaign_id=c.id, client_id=my_id, amount=3_000, reason="x", by=FINANCE, request_key="p"
    )
    client.force_login(me)

    answer = client.get(
        "/portal/bonuses/preview/", {"amount": "10.00", "currency": "USD"}, HTTP_HX_REQUEST="true"
    )
    bad = client.get("/portal/bonuses/preview/", {"amount": "1.001", "currency": "USD"})

    assert answer.status_code == 200 and "30.00" in answer.content.decode()
    assert "decimal places" in bad.content.decode()


def test_the_menus_offer_the_bonus_pages_to_the_right_people(client):
    me, _ = client_user()
    client.force_login(me)
    assert 'href="/portal/bonuses/"' in client.get("/portal/bonuses/").content.decode()
    client.force_login(user("finance"))
    assert 'href="/backoffice/bonuses/"' in client.get("/backoffice/bonuses/").content.decode()
    client.force_login(user("support"))
    assert 'href="/backoffice/bonuses/"' not in client.get("/backoffice/").content.decode()


def test_the_demo_seed_is_idempotent():
    from brokerdesk.bonuses import demo

    demo.seed()
    counts = (Campaign.objects.count(), Bonus.objects.count())
    demo.seed()
    assert (Campaign.objects.count(), Bonus.objects.count()) == counts == (3, 2)
