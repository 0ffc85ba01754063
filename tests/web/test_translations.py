"""Every user-facing string is translated into each site language, placeholders intact,
and pages come out in the visitor's language (right to left for Arabic)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from brokerdesk.core import translations

EXPECTED = translations.source_messages()


def test_there_are_at_least_twenty_target_locales_including_arabic_and_cjk() -> None:
    locales = translations.target_locales()
    assert len(locales) >= 20
    assert {"ar", "zh_Hans", "ja", "ko"} <= set(locales)


@pytest.mark.parametrize("locale", translations.target_locales())
def test_catalogue_is_complete(locale: str) -> None:
    assert translations.problems(locale, EXPECTED) == []


def test_a_dropped_placeholder_is_reported(tmp_path, monkeypatch) -> None:
    po = tmp_path / "xx" / "LC_MESSAGES" / "django.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Hello %(name)s"\nmsgstr "Hallo"\n\n'
        'msgid "Untouched"\nmsgstr ""\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(translations, "LOCALE_DIR", tmp_path)
    found = translations.problems("xx", {("", "Hello %(name)s"), ("", "Untouched"), ("", "New")})
    assert any("placeholders" in p and "Hello" in p for p in found)
    assert any("'Untouched' is not translated" in p for p in found)
    assert any("'New' is missing" in p for p in found)


def test_a_percent_sign_flagged_as_a_format_is_reported(tmp_path, monkeypatch) -> None:
    po = tmp_path / "xx" / "LC_MESSAGES" / "django.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#, python-format\nmsgid "At most (% of profit)"\nmsgstr "Höchstens (% vom Gewinn)"\n\n'
        '#, no-python-format\nmsgid "Share (% of pool)"\nmsgstr "Anteil (% am Pool)"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(translations, "LOCALE_DIR", tmp_path)
    found = translations.problems("xx")
    assert found == [
        "xx: 'At most (% of profit)' is flagged python-format without a placeholder "
        "(no-python-format)"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "direction"), [("ar", "rtl"), ("ja", "ltr"), ("de", "ltr")])
def test_sign_in_page_speaks_the_browser_language(language: str, direction: str) -> None:
    response = Client(headers={"accept-language": language}).get("/accounts/login/")
    html = response.content.decode()
    assert f'lang="{language}"' in html
    assert f'dir="{direction}"' in html
    with translation.override(language):
        assert translation.gettext("Sign in") != "Sign in"
        assert translation.gettext("Sign in") in html


@pytest.mark.django_db
def test_the_chosen_language_wins_over_the_browser() -> None:
    client = Client(headers={"accept-language": "de"})
    client.post("/i18n/setlang/", {"language": "ko", "next": "/accounts/login/"})
    html = client.get("/accounts/login/").content.decode()
    assert 'lang="ko"' in html
    assert settings.LANGUAGE_COOKIE_NAME in client.cookies
