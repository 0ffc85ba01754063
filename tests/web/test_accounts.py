"""Sign-up, e-mail verification, sign-in, lockout and the staff MFA requirement (no browser)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client as HttpClient

from brokerdesk.backoffice.mfa import MfaAdapter
from brokerdesk.clients.models import Client
from brokerdesk.portal.formatting import format_minor
from brokerdesk.staff.roles import Role, grant_role
from tests.web.conftest import PASSWORD, fund, verified_user

pytestmark = pytest.mark.django_db

SIGNUP = {
    "first_name": "Eleni",
    "last_name": "Georgiou",
    "email": "eleni@example.com",
    "date_of_birth": "1991-03-08",
    "country": "CY",
    "jurisdiction": "cysec",
    "password1": PASSWORD,
    "password2": PASSWORD,
}


def sign_up(http: HttpClient, **changes: Any) -> Any:
    return http.post("/accounts/signup/", {**SIGNUP, **changes})


def confirmation_path() -> str:
    found = re.search(r"/accounts/confirm-email/[^/\s]+/", mail.outbox[-1].body)
    assert found, mail.outbox[-1].body
    return found.group(0)


def sign_in(http: HttpClient, email: str, password: str = PASSWORD) -> Any:
    return http.post("/accounts/login/", {"login": email, "password": password})


def current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    counter = counters[len(counters) // 2]  # the middle one: now
    return format_hotp_value(hotp_value(secret, counter))


def test_sign_up_creates_the_user_and_the_client_and_sends_a_verification_mail(client):
    response = sign_up(client)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = get_user_model().objects.get(email="eleni@example.com")
    registered = Client.objects.get(user=user)
    assert (registered.first_name, registered.last_name) == ("Eleni", "Georgiou")
    assert (registered.jurisdiction, str(registered.country)) == ("cysec", "CY")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["eleni@example.com"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"country": "US"}, "country", "does not accept clients from US"),
        ({"date_of_birth": "2015-01-01"}, "date_of_birth", "at least 18"),
    ],
)
def test_sign_up_refuses_what_the_jurisdiction_does_not_onboard(client, changes, field, message):
    response = sign_up(client, **changes)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert not get_user_model().objects.filter(email="eleni@example.com").exists()
    assert not Client.objects.exists()
    assert mail.outbox == []


def test_an_unverified_address_cannot_sign_in(client):
    sign_up(client)
    client.logout()

    response = sign_in(client, "eleni@example.com")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/portal/").status_code == 302  # still anonymous: sent to sign in


def test_a_verified_client_sees_name_kyc_status_and_balances(client):
    sign_up(client)
    client.post(confirmation_path())
    client_id = Client.objects.get(email="eleni@example.com").pk
    fund(client_id, 123456, "USD")
    fund(client_id, 5000, "USD", bucket="bonus")
    fund(client_id, 1500, "JPY")

    response = sign_in(client, "eleni@example.com")
    assert response.status_code == 302 and response["Location"] == "/portal/"
    page = client.get("/portal/").content.decode()

    assert "Welcome, Eleni Georgiou" in page
    assert 'data-state="lead"' in page and "Not started" in page
    assert "1,234.56" in page and "50.00" in page and "1,500" in page


def test_the_e_mail_of_an_existing_client_does_not_make_a_second_account(client):
    sign_up(client)
    client.logout()
    mail.outbox.clear()
    cache.clear()  # past allauth's cool-down between mails to one address

    response = sign_up(client, first_name="Someone", last_name="Else")

    assert response.status_code == 302  # same answer as a fresh sign-up: nothing revealed
    assert get_user_model().objects.filter(email="eleni@example.com").count() == 1
    assert Client.objects.count() == 1
    assert len(mail.outbox) == 1  # the owner is told someone tried


def test_five_failed_sign_ins_lock_the_address_out(client):
    verified_user(email="locked@example.com")
    for _ in range(5):
        assert sign_in(client, "locked@example.com", "wrong-password").status_code == 200

    response = sign_in(client, "locked@example.com")  # the right password, too late

    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_session_cookie_is_http_only_and_same_site(client):
    verified_user(email="cookie@example.com")
    response = sign_in(client, "cookie@example.com")

    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


def test_staff_without_an_authenticator_are_sent_to_set_one_up(client):
    staff = verified_user(email="officer@example.com")
    grant_role(staff, Role.COMPLIANCE_OFFICER)
    sign_in(client, "officer@example.com")

    for page in ("/backoffice/", "/portal/", "/"):
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith("/accounts/2fa/totp/activate/?next=")
    # allauth asks for the password again before any change of authenticators
    response = client.get("/accounts/2fa/totp/activate/")
    assert response["Location"].startswith("/accounts/reauthenticate/")
    client.post(response["Location"], {"password": PASSWORD})
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    assert client.get("/api/v1/docs").status_code == 200  # the API documentation stays readable
    refused = client.get("/api/v1/ledger/accounts", {"owner_type": "client", "owner_id": "x"})
    assert refused.status_code == 403 and refused.json()["code"] == "mfa_required"


def test_staff_with_an_authenticator_pass_the_second_factor_then_see_the_back_office(client):
    staff = verified_user(email="finance@example.com")
    grant_role(staff, Role.FINANCE)
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)

    response = sign_in(client, "finance@example.com")
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/backoffice/").status_code == 302  # not signed in until the code

    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert response.status_code == 302 and response["Location"] == "/backoffice/"
    page = client.get("/backoffice/")
    assert page.status_code == 200 and "Finance" in page.content.decode()


def test_staff_cannot_remove_their_only_second_factor():
    staff = verified_user(email="dealer@example.com")
    grant_role(staff, Role.DEALING)
    only = TOTP.activate(staff, generate_totp_secret()).instance
    customer = verified_user(email="customer@example.com")
    theirs = TOTP.activate(customer, generate_totp_secret()).instance

    assert MfaAdapter().can_delete_authenticator(only) is False
    assert MfaAdapter().can_delete_authenticator(theirs) is True
    Authenticator.objects.create(user=staff, type=Authenticator.Type.WEBAUTHN, data={})
    assert MfaAdapter().can_delete_authenticator(only) is True


def test_a_client_is_refused_the_back_office(client):
    sign_up(client)
    client.post(confirmation_path())
    sign_in(client, "eleni@example.com")

    assert client.get("/backoffice/").status_code == 403


def test_the_admin_signs_in_through_allauth(client):
    response = client.get("/backoffice/admin/login/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_money_is_shown_from_minor_units_at_the_currency_scale():
    assert format_minor(123456, "USD") == "1,234.56"
    assert format_minor(-5, "EUR") == "-0.05"
    assert format_minor(1500, "JPY") == "1,500"
    assert format_minor(1, "BTC") == "0.00000001"


def test_a_recovery_code_passes_the_second_factor_once(client):
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    staff = verified_user(email="support@example.com")
    grant_role(staff, Role.SUPPORT)
    TOTP.activate(staff, generate_totp_secret())
    code = RecoveryCodes.activate(staff).get_unused_codes()[0]

    sign_in(client, "support@example.com")
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response["Location"] == "/backoffice/"
    client.post("/accounts/logout/")

    sign_in(client, "support@example.com")
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 200  # used up: refused
    assert "_auth_user_id" not in client.session


def test_password_reset_by_e_mail_then_sign_in_with_the_new_password(client):
    verified_user(email="forgetful@example.com")
    client.post("/accounts/password/reset/", {"email": "forgetful@example.com"})
    link = re.search(r"/accounts/password/reset/key/\S+/", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body

    form_page = client.get(link.group(0), follow=True)
    new_password = "Brand-New-Harbour-9923"
    response = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else link.group(0),
        {"password1": new_password, "password2": new_password},
    )

    assert response.status_code == 302
    assert sign_in(client, "forgetful@example.com", PASSWORD).status_code == 200  # old: refused
    assert sign_in(client, "forgetful@example.com", new_password)["Location"] == "/portal/"


def test_sign_out_ends_the_session(client):
    verified_user(email="leaving@example.com")
    sign_in(client, "leaving@example.com")

    client.post("/accounts/logout/")

    assert "_auth_user_id" not in client.session


def test_staff_without_an_authenticator_cannot_open_the_admin_either(client):
    staff = verified_user(email="root@example.com", is_staff=True, is_superuser=True)
    sign_in(client, staff.email)

    response = client.get("/backoffice/admin/ledger/transfer/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/totp/activate/")


def test_the_dashboard_shows_the_current_kyc_state(client):
    from brokerdesk.compliance import services as compliance

    sign_up(client)
    client.post(confirmation_path())
    sign_in(client, "eleni@example.com")
    client_id = Client.objects.get(email="eleni@example.com").pk

    compliance.request_documents(client_id, by="system:test", reason="identity documents")
    page = client.get("/portal/").content.decode()

    assert 'data-state="documents_pending"' in page and "Documents needed" in page
    assert "No wallet yet" in page


def test_sign_up_can_be_closed(client, settings):
    settings.ALLOW_SIGNUP = False

    response = sign_up(client)

    assert "Sign Up Closed" in response.content.decode()
    assert not get_user_model().objects.exists()
