"""Translation catalogues: extract the site's strings, check each locale, compile them.

Our strings live in ``src/brokerdesk/locale/<locale>/LC_MESSAGES/django.po`` for every
language of ``settings.LANGUAGES`` but English (the source language). ``extract`` runs
Django's ``makemessages`` over the package; ``problems`` lists what keeps a catalogue from
being complete (a missing, empty or fuzzy translation, or a placeholder the translation
dropped or invented); ``compile`` writes ``django.mo`` with polib, so no system gettext
is needed on a fresh machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polib  # type: ignore[import-untyped]
from django.conf import settings
from django.utils.translation import to_locale

PACKAGE_DIR = Path(__file__).resolve().parent.parent
LOCALE_DIR = PACKAGE_DIR / "locale"
SOURCE_LANGUAGE = "en"
# %(name)s / %s / %d (python-format) and {name} (brace format) placeholders.
PLACEHOLDER = re.compile(r"%\([a-zA-Z0-9_]+\)[sdfr]|%[sdfr]|\{[a-zA-Z0-9_]*\}")
IGNORED = ["static/*", "locale/*", "*/migrations/*", "*/tests/*"]
# gettext plural rules of each target locale (what the catalogue header must say).
PLURAL_FORMS = {
    "ar": "nplurals=6; plural=(n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : n%100>=3 && n%100<=10 ? 3 "
    ": n%100>=11 ? 4 : 5);",
    "de": "nplurals=2; plural=(n != 1);",
    "es": "nplurals=2; plural=(n != 1);",
    "fa": "nplurals=2; plural=(n > 1);",
    "fr": "nplurals=2; plural=(n > 1);",
    "hi": "nplurals=2; plural=(n != 1);",
    "id": "nplurals=1; plural=0;",
    "it": "nplurals=2; plural=(n != 1);",
    "ja": "nplurals=1; plural=0;",
    "ko": "nplurals=1; plural=0;",
    "ms": "nplurals=1; plural=0;",
    "nl": "nplurals=2; plural=(n != 1);",
    "pl": "nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);",
    "pt_BR": "nplurals=2; plural=(n > 1);",
    "ru": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 "
    "|| n%100>=20) ? 1 : 2);",
    "th": "nplurals=1; plural=0;",
    "tr": "nplurals=2; plural=(n > 1);",
    "uk": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 "
    "|| n%100>=20) ? 1 : 2);",
    "vi": "nplurals=1; plural=0;",
    "zh_Hans": "nplurals=1; plural=0;",
    "zh_Hant": "nplurals=1; plural=0;",
}


def target_locales() -> list[str]:
    """The locale names (``zh_Hans``, ``pt_BR``, …) we translate into."""
    return [to_locale(code) for code, _ in settings.LANGUAGES if code != SOURCE_LANGUAGE]


def catalogue_path(locale: str) -> Path:
    """Where the ``.po`` file of ``locale`` lives."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / "django.po"


def _makemessages(root: Path, locales: Iterable[str]) -> None:
    """Run Django's makemessages in ``root`` (a directory holding a ``locale`` folder)."""
    args = [sys.executable, "-m", "django", "makemessages", "--no-obsolete", "--no-location"]
    args += [f"--ignore={pattern}" for pattern in IGNORED]
    args += [f"--locale={locale}" for locale in locales]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(PACKAGE_DIR.parent)}
    subprocess.run(args, cwd=root, env=env, check=True, capture_output=True)  # noqa: S603


def extract(locales: Iterable[str] | None = None) -> None:
    """Bring every catalogue up to date with the strings in the source (keeps translations)
    and give each its language's plural rule."""
    wanted = list(locales or target_locales())
    LOCALE_DIR.mkdir(exist_ok=True)
    _makemessages(PACKAGE_DIR, wanted)
    for locale in wanted:
        catalogue = polib.pofile(str(catalogue_path(locale)))
        catalogue.metadata["Plural-Forms"] = PLURAL_FORMS.get(
            locale, "nplurals=2; plural=(n != 1);"
        )
        catalogue.metadata["Language"] = locale
        catalogue.save()


def todo(locale: str) -> list[dict[str, Any]]:
    """The entries of ``locale`` still to translate, as plain data for a translator."""
    catalogue = polib.pofile(str(catalogue_path(locale)))
    return [
        {
            "msgctxt": entry.msgctxt or "",
            "msgid": entry.msgid,
            **({"msgid_plural": entry.msgid_plural} if entry.msgid_plural else {}),
        }
        for entry in catalogue
        if not entry.obsolete and _entry_problems(locale, entry, catalogue)
    ]


def apply(locale: str, translated: Iterable[Mapping[str, Any]]) -> int:
    """Write translations (``msgid``, optional ``msgctxt``, and ``msgstr`` or a list
    ``msgstr_plural``) into ``locale``'s catalogue; returns how many entries changed."""
    catalogue = polib.pofile(str(catalogue_path(locale)))
    by_key = {(entry.msgctxt or "", entry.msgid): entry for entry in catalogue}
    changed = 0
    for item in translated:
        entry = by_key.get((item.get("msgctxt") or "", item["msgid"]))
        if entry is None:
            continue
        if entry.msgid_plural:
            forms = item.get("msgstr_plural") or [item.get("msgstr", "")]
            entry.msgstr_plural = dict(enumerate(forms))
        else:
            entry.msgstr = item.get("msgstr", "")
        if "fuzzy" in entry.flags:
            entry.flags.remove("fuzzy")
        changed += 1
    catalogue.save()
    return changed


def source_messages() -> set[tuple[str, str]]:
    """Every (context, msgid) the source marks for translation, from a throw-away extraction."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "brokerdesk"
        shutil.copytree(
            PACKAGE_DIR,
            root,
            ignore=shutil.ignore_patterns("locale", "static", "migrations", "__pycache__"),
        )
        (root / "locale").mkdir()
        _makemessages(root, [SOURCE_LANGUAGE])
        catalogue = polib.pofile(
            str(root / "locale" / SOURCE_LANGUAGE / "LC_MESSAGES" / "django.po")
        )
        return {(entry.msgctxt or "", entry.msgid) for entry in catalogue if not entry.obsolete}


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def _plural_count(catalogue: polib.POFile) -> int:
    match = re.search(r"nplurals\s*=\s*(\d+)", catalogue.metadata.get("Plural-Forms", ""))
    return int(match.group(1)) if match else 2


def _entry_problems(locale: str, entry: polib.POEntry, catalogue: polib.POFile) -> list[str]:
    """What is wrong with one entry of ``locale``'s catalogue."""
    label = f"{locale}: {entry.msgid[:60]!r}"
    if "fuzzy" in entry.flags:
        return [f"{label} is marked fuzzy"]
    if "python-format" in entry.flags and not _placeholders(entry.msgid):
        # xgettext reads "% o" as a format; msgfmt -c then fails on the translations.
        return [f"{label} is flagged python-format without a placeholder (no-python-format)"]
    translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
    if not translations or not all(t.strip() for t in translations):
        return [f"{label} is not translated"]
    if entry.msgid_plural and len(translations) != _plural_count(catalogue):
        wanted_forms = _plural_count(catalogue)
        return [f"{label} has {len(translations)} plural forms, the language has {wanted_forms}"]
    wanted = _placeholders(entry.msgid) | _placeholders(entry.msgid_plural or "")
    problems = []
    for text in translations:
        found = _placeholders(text)
        # A plural form may leave out the count (one of languages without plurals).
        if found - wanted or (wanted - found - {"%(count)s", "%d", "{count}"}):
            problems.append(f"{label} has placeholders {sorted(found)}, expected {sorted(wanted)}")
    return problems


def problems(locale: str, expected: set[tuple[str, str]] | None = None) -> list[str]:
    """Why ``locale``'s catalogue is not complete (an empty list when it is)."""
    path = catalogue_path(locale)
    if not path.exists():
        return [f"{locale}: no catalogue at {path}"]
    catalogue = polib.pofile(str(path))
    found = []
    present = set()
    for entry in catalogue:
        if entry.obsolete:
            continue
        present.add((entry.msgctxt or "", entry.msgid))
        found += _entry_problems(locale, entry, catalogue)
    for context, msgid in sorted((expected or set()) - present):
        found.append(
            f"{locale}: {msgid[:60]!r} is missing{f' (context {context})' if context else ''}"
        )
    return found


def compile_all() -> int:
    """Write ``django.mo`` beside every ``django.po``; returns how many were compiled."""
    compiled = 0
    for po_path in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/django.po")):
        polib.pofile(str(po_path)).save_as_mofile(str(po_path.with_suffix(".mo")))
        compiled += 1
    return compiled
