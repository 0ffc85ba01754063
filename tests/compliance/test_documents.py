"""Documents: checked uploads, storage outside the database, signed URLs, expiry, retention."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from brokerdesk.clients import services as client_services
from brokerdesk.compliance import queries, services
from brokerdesk.compliance.models import Document, DocumentAccess
from brokerdesk.compliance.queries import may
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from tests.clients.factories import individual, user

pytestmark = pytest.mark.django_db
SYSTEM = "system:test"

JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\x11" * 200
    + (b"\xff\xd9")
)


def png(width: int = 600, height: int = 400) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        + b"\x00" * 4
        + b"IEND\xaeB`\x82"
    )


def pdf(body: bytes = b"1 0 obj << /Type /Catalog >> endobj") -> bytes:
    return b"%PDF-1.7\n" + body + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def documents_dir(settings, tmp_path) -> Path:
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    return settings.DOCUMENTS_DIR


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def upload(client_id, doc_type="passport", content=JPEG, **kw):
    kw.setdefault("by", SYSTEM)
    kw.setdefault("filename", "x.jpg")
    if doc_type == "passport":
        kw.setdefault("expires_on", clock.now().date() + timedelta(days=3650))
    if doc_type == "proof_of_address":
        kw.setdefault("issued_on", clock.now().date() - timedelta(days=30))
    return services.upload_document(client_id, doc_type=doc_type, content=content, **kw)


def test_an_upload_is_stored_outside_the_database_and_recorded(documents_dir):
    alice = individual()

    doc = upload(alice.pk, filename="my passport.JPG", declared_content_type="image/jpeg")

    files = stored_files(documents_dir)
    assert len(files) == 1 and files[0].read_bytes() == JPEG
    assert str(alice.pk) in str(files[0]) and "passport" not in files[0].name  # no user names
    assert (doc.content_type, doc.size, doc.status) == ("image/jpeg", len(JPEG), "received")
    assert OutboxEvent.objects.filter(type="compliance.document_uploaded").count() == 1
    assert AuditEntry.objects.filter(action="compliance.document_uploaded").count() == 1


@pytest.mark.parametrize(
    ("content", "filename", "declared", "code"),
    [
        (b"", "a.jpg", None, "empty_file"),
        (b"MZ\x90\x00" + b"\x00" * 300, "passport.jpg", None, "unsupported_type"),
        (b"<html><script>alert(1)</script></html>", "a.pdf", None, "unsupported_type"),
        (JPEG, "passport.exe", None, "extension_mismatch"),
        (png(), "scan.pdf", None, "extension_mismatch"),
        (JPEG, "a.jpg", "application/pdf", "content_type_mismatch"),
        (
            pdf(b"<< /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>"),
            "a.pdf",
            None,
            "active_content",
        ),
        (pdf(b"<< /Type /EmbeddedFile >>"), "a.pdf", None, "active_content"),
        (pdf()[:-8], "a.pdf", None, "corrupt_file"),
        (png(100_000, 100_000), "a.png", None, "image_too_large"),
        (JPEG[:20], "a.jpg", None, "corrupt_file"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    documents_dir, content, filename, declared, code
):
    alice = individual()

    with pytest.raises(ValidationError) as error:
        upload(alice.pk, content=content, filename=filename, declared_content_type=declared)

    assert (error.value.code, error.value.field) == (code, "file")
    assert stored_files(documents_dir) == []
    assert not Document.objects.exists()


def test_files_above_the_size_limit_are_refused(settings):
    settings.DOCUMENT_MAX_BYTES = 100
    with pytest.raises(ValidationError) as error:
        upload(individual().pk)
    assert error.value.code == "file_too_large"


@pytest.mark.parametrize(
    ("doc_type", "dates", "code", "field"),
    [
        ("passport", {"expires_on": date(2020, 1, 1)}, "already_expired", "expires_on"),
        ("proof_of_address", {"issued_on": None}, "required", "issued_on"),
        ("proof_of_address", {"issued_on": "old"}, "too_old", "issued_on"),
        ("national_id", {"issued_on": "future"}, "date_in_future", "issued_on"),
        ("tax_return", {}, "unknown_document_type", "doc_type"),
    ],
)
def test_document_dates_follow_the_rule_set(doc_type, dates, code, field):
    today = clock.now().date()
    dates = {
        k: {"old": today - timedelta(days=181), "future": today + timedelta(days=1)}.get(v, v)
        for k, v in dates.items()
    }
    with pytest.raises(ValidationError) as error:
        upload(individual().pk, doc_type=doc_type, **dates)
    assert (error.value.code, error.value.field) == (code, field)


def test_the_same_file_twice_is_a_conflict():
    alice = individual()
    upload(alice.pk)
    with pytest.raises(Conflict) as error:
        upload(alice.pk)
    assert error.value.code == "duplicate_document"
    assert Document.objects.count() == 1


def test_a_manual_submission_goes_through_once_the_required_documents_are_uploaded():
    alice = individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")
    upload(alice.pk, "national_id", content=png(), filename="id.png")
    upload(alice.pk, "proof_of_address", content=pdf(), filename="bill.pdf")

    assert services.submit_kyc(alice.pk, by=SYSTEM).state == "under_verification"


def test_a_signed_url_serves_the_file_once_verified_and_every_access_is_logged(client):
    officer = user("compliance_officer")
    doc = upload(individual().pk)

    url = services.document_url(doc.id, by=officer)
    response = client.get(url)

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JPEG
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, no-store"
    assert [(a.action, a.actor) for a in queries.document_accesses(doc.id)] == [
        ("url_issued", f"user:{officer.pk}"),
        ("downloaded", f"user:{officer.pk}"),
    ]


def test_an_expired_or_forged_link_is_refused(client, settings):
    doc = upload(individual().pk)
    url = services.document_url(doc.id, by=user("auditor"))

    forged = client.get(url[:-3] + ("abc" if not url.endswith("abc") else "xyz"))
    assert (forged.status_code, forged.json()["code"]) == (403, "bad_signature")
    settings.DOCUMENT_URL_MAX_AGE = -1  # every link is now older than allowed
    expired = client.get(url)
    assert (expired.status_code, expired.json()["code"]) == (403, "url_expired")
    assert DocumentAccess.objects.filter(action="downloaded").count() == 0


def test_only_the_owner_compliance_and_auditors_get_links():
    alice_user, bob_user = user(), user()
    alice, bob = individual(user=alice_user), individual(user=bob_user)
    doc = upload(alice.pk)

    assert services.document_url(doc.id, by=alice_user)
    for outsider in (bob_user, user("support"), user("finance")):
        with pytest.raises(NotFound):
            services.document_url(doc.id, by=outsider)
    with pytest.raises(PermissionDenied):
        upload(alice.pk, "selfie", content=png(), filename="me.png", by=bob_user)
    assert bob  # bob's own uploads are his business only


def test_expiring_documents_get_one_reminder_and_expired_ones_flag_the_client():
    alice = individual()
    today = clock.now().date()
    passport = upload(alice.pk, expires_on=today + timedelta(days=20))
    upload(alice.pk, "proof_of_address", content=pdf(), filename="bill.pdf")
    services.review_document(passport.id, accepted=True, by=SYSTEM)
    services.transition_kyc(alice.pk, "under_verification", by=SYSTEM, reason="ok")
    services.approve_kyc(alice.pk, by=SYSTEM, reason="ok")

    assert services.remind_expiring_documents(today=today) == 1  # within 30 days
    assert services.remind_expiring_documents(today=today) == 0
    assert services.expire_documents(today=today + timedelta(days=21)) == 1

    assert queries.get_document(passport.id).status == "expired"
    with clock.frozen(datetime.combine(today + timedelta(days=21), datetime.min.time(), UTC)):
        assert may(alice.pk, "withdraw").reason_code == "flag_documents_expired"
        assert may(alice.pk, "trade").allowed
        renewed = upload(
            alice.pk, content=png(), filename="new.png", expires_on=today + timedelta(days=3000)
        )
        services.review_document(renewed.id, accepted=True, by=user("compliance_officer"))
        assert may(alice.pk, "withdraw").allowed


def test_retention_deletes_the_bytes_but_keeps_metadata_access_log_and_audit_trail(
    documents_dir, django_capture_on_commit_callbacks
):
    alice = individual()
    doc = upload(alice.pk)
    services.document_url(doc.id, by=user("auditor"))
    six_years_ago = clock.now() - timedelta(days=6 * 366)
    with clock.frozen(six_years_ago):
        client_services.end_relationship(alice.pk, by=SYSTEM, reason="account closed")

    with django_capture_on_commit_callbacks(execute=True):
        assert services.apply_retention() == 1

    assert stored_files(documents_dir) == []
    kept = queries.get_document(doc.id)
    assert (kept.status, kept.sha256, kept.doc_type) == ("deleted", doc.sha256, "passport")
    assert len(queries.document_accesses(doc.id)) == 1
    assert AuditEntry.objects.filter(object_id=str(doc.id)).count() == 2
    assert audit.verify_chain().ok
    with pytest.raises(NotFound):
        services.document_url(doc.id, by=user("compliance_officer"))


def test_retention_waits_for_the_period_and_a_legal_hold():
    recent, held = individual(), individual()
    for c in (recent, held):
        upload(c.pk, content=png(), filename=f"{c.pk}.png", doc_type="selfie")
    with clock.frozen(clock.now() - timedelta(days=4 * 365)):
        client_services.end_relationship(recent.pk, by=SYSTEM, reason="closed")
    with clock.frozen(clock.now() - timedelta(days=9 * 365)):
        client_services.end_relationship(held.pk, by=SYSTEM, reason="closed")
    services.raise_flag(held.pk, "legal_hold", by=SYSTEM, reason="court order 12/2026")

    assert services.apply_retention() == 0
    doc = queries.documents_of(held.pk)[0]
    with pytest.raises(Conflict) as error:
        services.delete_document(doc.id, by=SYSTEM, reason="request")
    assert error.value.code == "legal_hold"


def test_documents_are_uploaded_and_listed_through_the_api(client):
    alice_user = user()
    alice = individual(user=alice_user)
    client.force_login(alice_user)

    response = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/documents",
        {"doc_type": "proof_of_address", "issued_on": str(clock.now().date()), "file": _file()},
    )
    assert response.status_code == 201, response.content
    listed = client.get(f"/api/v1/compliance/clients/{alice.pk}/documents").json()
    assert [d["doc_type"] for d in listed] == ["proof_of_address"]
    link = client.post(f"/api/v1/compliance/documents/{listed[0]['id']}/url").json()
    assert client.get(link["url"]).status_code == 200

    client.force_login(user())  # another client sees neither the list nor a link
    assert client.get(f"/api/v1/compliance/clients/{alice.pk}/documents").status_code == 404
    assert client.post(f"/api/v1/compliance/documents/{listed[0]['id']}/url").status_code == 404
    client.force_login(alice_user)

    bad = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/documents",
        {"doc_type": "selfie", "file": _file(b"GIF89a" + b"\x00" * 100, "me.gif")},
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "unsupported_type")


def _file(content: bytes | None = None, name: str = "bill.pdf"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content or pdf(), content_type="application/octet-stream")
