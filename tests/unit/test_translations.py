"""census's translations: English msgids in the code, a complete Spanish catalog, compiled.

The catalog is ``census/locale/es/LC_MESSAGES/django.po``, made with ``django-admin
makemessages -l es --ignore testing --add-location file`` run inside ``census/`` and compiled
with ``compilemessages``. A Colombian site (``LANGUAGE_CODE = "es-co"``) reads it through
gettext's fallback from ``es_CO`` to ``es``.
"""

from __future__ import annotations

import ast
import gettext
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import translation

from census.models import OUTCOME_CHOICES, Attempt, BulkRun, CedulaInfo, Status
from census.outcomes import Outcome

CENSUS = Path(__file__).resolve().parents[2] / "census"
LC_MESSAGES = Path("locale") / "es" / "LC_MESSAGES"
PO = CENSUS / LC_MESSAGES / "django.po"
MO = CENSUS / LC_MESSAGES / "django.mo"
#: What makemessages leaves out: the simulator's copy of the census site (Spanish on purpose).
IGNORE = ["testing"]


@dataclass
class Entry:
    msgstrs: list[str] = field(default_factory=list)
    fuzzy: bool = False


def read_po(path: Path) -> dict[str, Entry]:
    """The active entries of a .po file by key (``msgctxt\\x04msgid`` where there is a
    context, as gettext keys them; the header is ``""``). Obsolete (``#~``) entries are
    skipped."""
    entries: dict[str, Entry] = {}
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    fuzzy = False

    def close() -> None:
        nonlocal parts, current, fuzzy
        if "msgid" in parts:
            key = "".join(parts["msgid"])
            if "msgctxt" in parts:
                key = "".join(parts["msgctxt"]) + "\x04" + key
            strs = ["".join(v) for name, v in sorted(parts.items()) if name.startswith("msgstr")]
            entries[key] = Entry(msgstrs=strs, fuzzy=fuzzy)
        parts, current, fuzzy = {}, None, False

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith('"'):  # a continuation of the keyword above
            if current is not None:
                current.append(ast.literal_eval(line))
            continue
        done = any(name.startswith("msgstr") for name in parts)
        if done and not line.startswith("msgstr"):  # the next entry, or the end of this one
            close()
        current = None
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            flags = line[2:].replace(" ", "").split(",") if line.startswith("#,") else []
            fuzzy = fuzzy or "fuzzy" in flags
            continue
        name, _, value = line.partition(" ")
        current = parts.setdefault(name, [])
        current.append(ast.literal_eval(value))
    close()
    return entries


def test_the_catalog_translates_every_string_of_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """makemessages over a copy of census/ finds exactly the catalog's msgids, and every one
    of them has a Spanish translation that is neither empty nor fuzzy."""
    assert shutil.which("xgettext"), "gettext's tools are missing (scripts/setup.sh)"
    copy = tmp_path / "census"
    shutil.copytree(CENSUS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / LC_MESSAGES / "django.po").unlink()  # a fresh extraction, not a merge
    (copy / LC_MESSAGES / "django.mo").unlink()
    settings.LOCALE_PATHS = []
    monkeypatch.chdir(copy)
    call_command("makemessages", locale=["es"], ignore_patterns=IGNORE, verbosity=0)

    in_code = set(read_po(copy / LC_MESSAGES / "django.po")) - {""}
    shipped = read_po(PO)
    header = shipped.pop("")
    assert not header.fuzzy and "Language: es" in header.msgstrs[0]
    assert sorted(in_code - set(shipped)) == [], "not in the catalog: run makemessages"
    assert sorted(set(shipped) - in_code) == [], "in the catalog, gone from the code"
    assert sorted(k for k, e in shipped.items() if e.fuzzy) == [], "fuzzy translations"
    untranslated = sorted(k for k, e in shipped.items() if not e.msgstrs or not all(e.msgstrs))
    assert untranslated == [], "empty translations"


def test_labels_and_verbose_names_come_out_in_spanish() -> None:
    """Under Spanish (es, and es-co through the fallback) the status and outcome labels, the
    verbose names and the app's name are the catalog's; the msgids themselves are English."""
    outcome_labels = dict(OUTCOME_CHOICES)
    for language in ("es", "es-co"):
        with translation.override(language):
            assert str(Status.FOUND.label) == "Encontrada"
            assert str(Status.PENDING.label) == "Pendiente"
            assert str(Status.CANCELLED.label) == "Cancelada"
            assert str(Status.NOT_FOUND.label) == "No encontrada"
            assert str(outcome_labels[Outcome.TIMEOUT]) == "Tiempo de espera agotado"
            assert str(CedulaInfo._meta.get_field("puesto").verbose_name) == "puesto de votación"
            assert str(CedulaInfo._meta.get_field("mesa").verbose_name) == "mesa"
            assert str(CedulaInfo._meta.verbose_name) == "consulta de cédula"
            assert str(Attempt._meta.verbose_name_plural) == "intentos"
            assert str(BulkRun._meta.verbose_name) == "consulta masiva"
            assert str(apps.get_app_config("census").verbose_name) == "Censo electoral"
    with translation.override("en"):
        assert str(Status.FOUND.label) == "Found"
        assert str(CedulaInfo._meta.get_field("puesto").verbose_name) == "polling place"
        assert str(apps.get_app_config("census").verbose_name) == "Electoral census"


def test_every_outcome_has_its_own_label() -> None:
    """Each outcome's choice is labelled (not its raw value), and the labels are distinct."""
    labels = dict(OUTCOME_CHOICES)
    assert set(labels) == {outcome.value for outcome in Outcome}
    with translation.override("en"):
        shown = [str(label) for label in labels.values()]
    assert len(set(shown)) == len(shown)
    assert not set(shown) & set(labels)


def test_the_shipped_mo_is_the_compiled_po(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The .mo in the tree holds exactly the messages compilemessages makes of the .po now
    (compiled again in a temporary directory; messages compared, not mtimes)."""
    assert MO.is_file(), "census's .mo is missing: run compilemessages inside census/"
    assert shutil.which("msgfmt"), "gettext's tools are missing (scripts/setup.sh)"
    (tmp_path / LC_MESSAGES).mkdir(parents=True)
    shutil.copy(PO, tmp_path / LC_MESSAGES / "django.po")
    settings.LOCALE_PATHS = []
    monkeypatch.chdir(tmp_path)
    call_command("compilemessages", locale=["es"], verbosity=0)

    def catalog(path: Path) -> dict[Any, str]:
        with path.open("rb") as mo:
            return dict(gettext.GNUTranslations(mo)._catalog)  # type: ignore[attr-defined]

    fresh = catalog(tmp_path / LC_MESSAGES / "django.mo")
    assert len(fresh) > 1
    assert catalog(MO) == fresh, "the .mo is stale: run compilemessages inside census/"
