"""The example portal: registration (throttled, confirmed by e-mail, the same answer for any
cédula, invite codes), login, profile, its JSON endpoint, the leader refresh (who may refresh
whom, the throttle) and the settings' refusal to start without a secret key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from census.models import CedulaInfo, Status
from portal import throttle, views
from portal.forms import INVALID_CEDULA, UNKNOWN_INVITE
from portal.models import Member
from tests import factories
from tests.driving import clear_queue, queued

pytestmark = [pytest.mark.django_db, pytest.mark.urls("example_site.urls")]

PASSWORD = "una-clave-bastante-larga"


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any) -> None:
    settings.LOGIN_URL = "portal:login"
    # Hashing with the production hasher makes every registration take ~0.3 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CENSUS_IS_VERIFIED = "portal.verification.is_verified"


def _register(client: Client, cedula: str, *, address: str = "127.0.0.1", **extra: str) -> Any:
    """POST the registration form from ``address`` (REMOTE_ADDR)."""
    data = {
        "username": cedula,
        "first_name": "Ana",
        "last_name": "Pérez",
        "email": "ana@example.org",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **extra,
    }
    return client.post(reverse("portal:register"), data, REMOTE_ADDR=address)


def _link(message: Any) -> str:
    """The confirmation link's path in a mailed message."""
    match = re.search(r"http://testserver(/registro/confirmar/[^/\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


def _finish(member: Any, status: Status, **fields: str) -> CedulaInfo:
    """Put a member's lookup in a final state, as the pipeline would (test data only)."""
    CedulaInfo.objects.filter(user=member).update(status=status.value, **fields)
    return CedulaInfo.objects.get(user=member)


def test_registration_creates_member_and_pending_lookup(client: Client) -> None:
    """A valid registration creates an unconfirmed member with a pending lookup, does not log
    them in, says "check your e-mail" and mails the confirmation link."""
    response = _register(client, "1020304050")

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:login")
    member = Member.objects.get(username="1020304050")
    assert member.role == Member.Role.MEMBER
    assert member.email == "ana@example.org"
    assert member.confirmed_at is None
    assert member.check_password(PASSWORD)
    assert CedulaInfo.objects.get(user=member).status == Status.PENDING
    assert client.get(reverse("portal:profile")).status_code == 302  # not logged in
    page = client.get(reverse("portal:login")).content.decode()
    assert "Revisa tu correo para activar tu cuenta" in page
    [message] = mail.outbox
    assert message.to == ["ana@example.org"]
    assert _link(message)
    assert "1020304050" not in message.body


def test_registration_normalises_the_cedula(client: Client) -> None:
    """Dots, spaces and dashes are removed before the cédula becomes the username."""
    _register(client, " 1.020.304-051 ")

    assert Member.objects.filter(username="1020304051").exists()


@pytest.mark.parametrize("cedula", ["12ab3456", "12", "12345678901", "1020 30 40 50 1"])
def test_invalid_cedula_is_rejected_with_a_clear_error(client: Client, cedula: str) -> None:
    """An invalid cédula re-shows the form with a Spanish error and creates nobody."""
    response = _register(client, cedula)

    assert response.status_code == 200
    assert response.context["form"].errors["username"] == [INVALID_CEDULA]
    assert not Member.objects.exists()
    assert not CedulaInfo.objects.exists()


def test_invalid_cedula_error_is_shown_on_the_page(client: Client) -> None:
    """The error text is on the page the member sees."""
    response = _register(client, "12ab3456")

    assert INVALID_CEDULA in response.content.decode()


def test_registration_records_the_referring_leader(client: Client) -> None:
    """The optional invite code links the new member to the leader whose code it is."""
    leader = factories.leader()

    _register(client, "1020304054", invite_code=leader.invite_code)

    assert Member.objects.get(username="1020304054").referred_by == leader


def test_an_invite_code_that_is_not_a_leaders_gets_one_generic_error(client: Client) -> None:
    """An unknown code, a former leader's and a made-up one all get the same error, which
    names nobody; nobody is created."""
    former = factories.leader()
    Member.objects.filter(pk=former.pk).update(role=Member.Role.MEMBER)

    errors = [
        _register(Client(), factories.cedula(), invite_code=code).context["form"].errors
        for code in (former.invite_code, "ZZZZZZZZZZ", "1020304055")
    ]

    assert [e["invite_code"] for e in errors] == [[UNKNOWN_INVITE]] * 3
    assert Member.objects.count() == 1


def test_profile_requires_login(client: Client) -> None:
    """Anonymous visitors are sent to the login page."""
    response = client.get(reverse("portal:profile"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))


def test_profile_shows_status_and_polling_place(client: Client) -> None:
    """A found lookup shows the Spanish status label and the polling place."""
    member = factories.member()
    _finish(member, Status.FOUND, municipio="MEDELLIN", puesto="COLEGIO SAN JOSE", mesa="7")
    client.force_login(member)

    page = client.get(reverse("portal:profile")).content.decode()

    assert "Encontrada" in page
    assert "COLEGIO SAN JOSE" in page
    assert 'data-final="true"' in page


def test_profile_polls_while_the_lookup_runs(client: Client) -> None:
    """A pending lookup renders the polling hook: the JSON URL and data-final=false."""
    member = factories.member()
    client.force_login(member)

    page = client.get(reverse("portal:profile")).content.decode()

    assert "Pendiente" in page
    assert 'data-final="false"' in page
    assert reverse("portal:census_status") in page


def test_status_json_while_pending(client: Client) -> None:
    """The JSON endpoint reports the status, its label and that it is not final."""
    client.force_login(factories.member())

    data = client.get(reverse("portal:census_status")).json()

    assert data["status"] == "pending"
    assert data["label"] == "Pendiente"
    assert data["final"] is False
    assert data["place"] is None
    assert "Pendiente" in data["html"]


def test_status_json_shows_the_novedad_of_a_cancelled_cedula(client: Client) -> None:
    """A cancelled lookup carries its novedad, final, and never the cédula."""
    member = factories.member()
    _finish(member, Status.CANCELLED, novedad="Cancelada por Muerte", resolucion="0042 de 2024")
    client.force_login(member)

    response = client.get(reverse("portal:census_status"))
    data = response.json()

    assert data["final"] is True
    assert data["label"] == "Cancelada"
    assert data["novedad"]["novedad"] == "Cancelada por Muerte"
    assert member.username not in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0")


def test_status_json_and_profile_show_the_coddivipol_of_a_found_lookup(client: Client) -> None:
    """A found lookup's DIVIPOL code is in the place of the JSON and on the profile."""
    member = factories.member()
    _finish(member, Status.FOUND, municipio="SOACHA", puesto="PUESTO 3", coddivipol="157301903")
    client.force_login(member)

    data = client.get(reverse("portal:census_status")).json()
    page = client.get(reverse("portal:profile")).content.decode()

    assert data["place"]["coddivipol"] == "157301903"
    assert 'data-testid="census-coddivipol">157301903<' in page


def test_a_not_found_with_a_reason_explains_it_and_shows_the_sites_words(client: Client) -> None:
    """A not-found lookup whose answer said "no se encuentra habilitado para votar" says so,
    with the site's words; a plain not-found keeps the general sentence and no novedad."""
    member, other = factories.member(), factories.member()
    words = "no se encuentra habilitado para votar"
    _finish(member, Status.NOT_FOUND, final_reason="not_enabled", novedad=words)
    _finish(other, Status.NOT_FOUND, final_reason="not_found")
    client.force_login(member)
    data = client.get(reverse("portal:census_status")).json()
    client.force_login(other)
    plain = client.get(reverse("portal:census_status")).json()

    assert "no está habilitada para votar" in data["explanation"]
    assert data["novedad"]["novedad"] == words
    assert plain["novedad"] is None
    assert plain["explanation"].startswith("Tu cédula no aparece en el censo")


def test_status_json_requires_login(client: Client) -> None:
    """Anonymous requests get no census data."""
    response = client.get(reverse("portal:census_status"))

    assert response.status_code == 302


def test_member_cannot_refresh(client: Client) -> None:
    """A member's refresh is refused with 403 and queues nothing."""
    member = factories.member()
    info = _finish(member, Status.ERROR)
    client.force_login(member)

    response = client.post(reverse("portal:refresh", args=[member.pk]))

    assert response.status_code == 403
    info.refresh_from_db()
    assert info.status == Status.ERROR
    assert info.step == 1


def test_leader_refresh_starts_a_new_lookup(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A leader's refresh of a member they referred: pending again, new attempt, queued."""
    leader = factories.leader()
    member = factories.member(referred_by=leader)
    info = _finish(member, Status.ERROR)
    client.force_login(leader)

    clear_queue()  # the registration's attempt 1

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("portal:refresh", args=[member.pk]), follow=True)

    assert response.redirect_chain == [(reverse("portal:profile"), 302)]
    assert "Pedimos una nueva consulta del censo." in response.content.decode()
    info.refresh_from_db()
    assert info.status == Status.PENDING
    assert info.step == 2
    # Attempt 2 goes to the cluster's queue when the request commits.
    assert [task["name"] for task in queued()] == [f"census-lookup-{info.pk}-step-2"]


def test_leader_refresh_of_a_lookup_in_flight_changes_nothing(client: Client) -> None:
    """While a lookup runs, a leader's refresh is a no-op with an explanation."""
    leader = factories.leader()
    client.force_login(leader)

    response = client.post(reverse("portal:refresh", args=[leader.pk]), follow=True)

    assert "Ya hay una consulta en curso" in response.content.decode()
    assert CedulaInfo.objects.get(user=leader).step == 1


def test_refresh_is_post_only(client: Client) -> None:
    """A GET cannot trigger a lookup."""
    leader = factories.leader()
    client.force_login(leader)

    assert client.get(reverse("portal:refresh", args=[leader.pk])).status_code == 405


def test_only_leaders_see_the_refresh_button(client: Client) -> None:
    """The 'Actualizar consulta' button is on a leader's profile and not on a member's."""
    leader = factories.leader()
    factories.member(referred_by=leader, first_name="Beto")
    member = factories.member()

    client.force_login(member)
    assert "Actualizar consulta" not in client.get(reverse("portal:profile")).content.decode()
    client.force_login(leader)
    page = client.get(reverse("portal:profile")).content.decode()
    assert "Actualizar consulta" in page
    assert "Beto" in page


# -- who may refresh whom ---------------------------------------------------------------------


def _refresh(client: Client, user_id: int) -> Any:
    return client.post(reverse("portal:refresh", args=[user_id]))


def _missing_id() -> int:
    return (Member.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000


def _lookup_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "census_cedulainfo" in q["sql"]]


def test_leader_cannot_refresh_someone_elses_referral(client: Client) -> None:
    """A leader's refresh of a member another leader referred is a 403 that changes nothing."""
    leader, other = factories.leader(), factories.leader()
    member = factories.member(referred_by=other)
    info = _finish(member, Status.ERROR)
    client.force_login(leader)

    with CaptureQueriesContext(connection) as queries:
        response = _refresh(client, member.pk)

    assert response.status_code == 403
    assert _lookup_queries(queries) == []
    info.refresh_from_db()
    assert (info.status, info.step) == (Status.ERROR, 1)


def test_leader_cannot_refresh_a_member_nobody_referred(client: Client) -> None:
    """A member without a referring leader is not any leader's to refresh."""
    leader = factories.leader()
    member = factories.member()
    _finish(member, Status.ERROR)
    client.force_login(leader)

    assert _refresh(client, member.pk).status_code == 403


def test_unknown_id_gets_the_same_403_as_someone_elses_referral(client: Client) -> None:
    """For a leader, an id that does not exist and a member not theirs answer alike."""
    leader, other = factories.leader(), factories.leader()
    member = factories.member(referred_by=other)
    _finish(member, Status.ERROR)
    client.force_login(leader)

    not_theirs = _refresh(client, member.pk)
    missing = _refresh(client, _missing_id())

    assert missing.status_code == not_theirs.status_code == 403
    assert missing.content == not_theirs.content


def test_non_leader_gets_403_before_any_lookup_is_read(client: Client) -> None:
    """A member's refresh is 403 for existing and missing ids alike, the lookup never read."""
    member = factories.member()
    other = factories.member()
    info = _finish(other, Status.ERROR)
    client.force_login(member)

    with CaptureQueriesContext(connection) as queries:
        existing = _refresh(client, other.pk)
        own = _refresh(client, member.pk)
        missing = _refresh(client, _missing_id())

    assert existing.status_code == own.status_code == missing.status_code == 403
    assert existing.content == own.content == missing.content
    assert _lookup_queries(queries) == []
    info.refresh_from_db()
    assert (info.status, info.step) == (Status.ERROR, 1)


@pytest.mark.parametrize(
    "make_requester",
    [
        pytest.param(lambda: factories.member(is_superuser=True), id="superuser"),
        pytest.param(factories.permission_holder, id="permission-holder"),
    ],
)
def test_superuser_and_permission_holder_may_refresh_anyone(
    client: Client, make_requester: Any
) -> None:
    """Superusers and holders of census.refresh_cedulainfo refresh any member's lookup."""
    leader = factories.leader()
    referral = factories.member(referred_by=leader)
    unreferred = factories.member()
    infos = [_finish(referral, Status.ERROR), _finish(unreferred, Status.NOT_FOUND)]
    client.force_login(make_requester())

    responses = [_refresh(client, referral.pk), _refresh(client, unreferred.pk)]

    assert [r.status_code for r in responses] == [302, 302]
    for info in infos:
        info.refresh_from_db()
        assert (info.status, info.step) == (Status.PENDING, 2)


def test_superuser_refresh_of_an_unknown_id_is_404(client: Client) -> None:
    """Who may refresh anyone may know who exists: a missing id is a plain 404."""
    client.force_login(factories.member(is_superuser=True))

    assert _refresh(client, _missing_id()).status_code == 404


def test_member_without_lookup_gets_a_message_and_nothing_is_created(client: Client) -> None:
    """A referral with no CedulaInfo: the leader is told so; no lookup is created or queued."""
    leader = factories.leader()
    member = factories.member(referred_by=leader)
    CedulaInfo.objects.filter(user=member).delete()
    client.force_login(leader)

    response = client.post(reverse("portal:refresh", args=[member.pk]), follow=True)

    assert response.redirect_chain == [(reverse("portal:profile"), 302)]
    assert "no tiene una consulta del censo" in response.content.decode()
    assert not CedulaInfo.objects.filter(user=member).exists()


def test_member_without_lookup_is_still_403_for_other_leaders(client: Client) -> None:
    """Whether a member has a lookup is not visible to a leader who may not refresh them."""
    member = factories.member(referred_by=factories.leader())
    CedulaInfo.objects.filter(user=member).delete()
    client.force_login(factories.leader())

    assert _refresh(client, member.pk).status_code == 403


# -- throttle ---------------------------------------------------------------------------------


def test_throttle_answers_429_after_n_requests(
    client: Client, settings: Any, clock: list[float]
) -> None:
    """Over N requests per window a leader gets 429 in Spanish, with Retry-After."""
    settings.PORTAL_REFRESH_THROTTLE = (3, 600)
    leader = factories.leader()
    member = factories.member(referred_by=leader)
    info = _finish(member, Status.ERROR)
    client.force_login(leader)

    statuses = [_refresh(client, member.pk).status_code for _ in range(3)]
    clock[0] += 60
    refused = _refresh(client, member.pk)

    assert statuses == [302, 302, 302]  # queued, then twice "in flight": all three count
    assert refused.status_code == 429
    assert refused["Retry-After"] == "540"
    page = refused.content.decode()
    assert "Demasiadas solicitudes" in page
    assert "se permiten como máximo 3 cada 10 minutos." in page
    assert "Vuelve a intentarlo en 9 minutos" in page
    info.refresh_from_db()
    assert info.step == 2


def test_throttle_counts_refused_and_unknown_targets(
    client: Client, settings: Any, clock: list[float]
) -> None:
    """403s for members not theirs count against the leader, so probing is throttled too."""
    settings.PORTAL_REFRESH_THROTTLE = (2, 600)
    leader = factories.leader()
    client.force_login(leader)

    statuses = [_refresh(client, _missing_id()).status_code for _ in range(3)]

    assert statuses == [403, 403, 429]


def test_throttle_is_per_leader_and_lets_in_again_after_the_window(
    client: Client, settings: Any, clock: list[float]
) -> None:
    """Another leader is not affected; the same leader is let in once the window has passed."""
    settings.PORTAL_REFRESH_THROTTLE = (1, 600)
    first, second = factories.leader(), factories.leader()
    client.force_login(first)
    assert _refresh(client, first.pk).status_code == 302
    assert _refresh(client, first.pk).status_code == 429

    client.force_login(second)
    assert _refresh(client, second.pk).status_code == 302

    client.force_login(first)
    clock[0] += 599
    assert _refresh(client, first.pk).status_code == 429
    clock[0] += 1
    assert _refresh(client, first.pk).status_code == 302


def test_throttle_does_not_count_non_leaders(
    client: Client, settings: Any, clock: list[float]
) -> None:
    """A non-leader is refused with 403 every time, never 429: nothing of theirs is counted."""
    settings.PORTAL_REFRESH_THROTTLE = (1, 600)
    member = factories.member()
    client.force_login(member)

    assert [_refresh(client, member.pk).status_code for _ in range(3)] == [403, 403, 403]


def test_throttle_defaults_to_10_per_10_minutes(settings: Any) -> None:
    """Without PORTAL_REFRESH_THROTTLE: 10 requests per 600 s; None turns it off."""
    assert not hasattr(settings, "PORTAL_REFRESH_THROTTLE")
    assert throttle.limits() == (10, 600)
    settings.PORTAL_REFRESH_THROTTLE = None
    assert throttle.limits() is None


# -- one cédula, one account ------------------------------------------------------------------


def test_spellings_of_one_cedula_make_one_account() -> None:
    """Leading zeros, dots, commas, spaces: every spelling of one cédula is the same account."""
    spellings = ["01234567890", "1.234.567.890", "1234567890", "1,234,567,890", "1 234 567 890"]

    responses = [_register(Client(), spelling) for spelling in spellings]

    assert [r.status_code for r in responses] == [302] * 5
    assert list(Member.objects.values_list("username", flat=True)) == ["1234567890"]


def test_concurrent_registration_of_one_cedula_is_answered_as_a_new_one(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another registration of the cédula commits between the look and the save, the
    unique username decides: the same answer, one account, the confirmed one untouched."""
    first = factories.member(username="1020304057", password="otra-clave-muy-larga")
    real_filter = Member.objects.filter
    calls = []

    def filter_missing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) == 1:  # registration's first look: not there yet
            return real_filter(pk=-1)
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(Member.objects, "filter", filter_missing_once)
    response = _register(client, "1020304057")
    monkeypatch.undo()

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:login")
    assert Member.objects.count() == 1
    first.refresh_from_db()
    assert first.check_password("otra-clave-muy-larga")


def test_invite_code_accepts_lower_case_spaces_and_dashes(client: Client) -> None:
    """The invite code is read as typed from a phone: lower case, spaces, dashes."""
    leader = factories.leader()
    code = leader.invite_code.lower()

    _register(client, "1020304059", invite_code=f" {code[:5]}-{code[5:]} ")

    assert Member.objects.get(username="1020304059").referred_by == leader


@pytest.mark.parametrize("spelling", ["1234567891", "01.234.567.891", " 1 234 567 891 "])
def test_login_accepts_any_spelling_of_the_cedula(client: Client, spelling: str) -> None:
    """The login form canonicalises the cédula as registration did."""
    factories.member(username="1234567891", password=PASSWORD)

    response = client.post(reverse("portal:login"), {"username": spelling, "password": PASSWORD})

    assert response.status_code == 302, response.context["form"].errors
    assert response["Location"] == reverse("portal:profile")


def test_login_with_a_username_that_is_not_a_cedula(client: Client) -> None:
    """A superuser named 'admin' still logs in: non-cédulas are looked up as typed."""
    Member.objects.create_superuser(username="admin", password=PASSWORD)

    response = client.post(reverse("portal:login"), {"username": "admin", "password": PASSWORD})

    assert response.status_code == 302


# -- settings ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_KEY = "example-portal-development-key-not-secret"
SHOW_SETTINGS = (
    "import json, example_site.settings as s; "
    "print(json.dumps({'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY, "
    "'ALLOWED_HOSTS': s.ALLOWED_HOSTS, 'THROTTLE': s.PORTAL_REFRESH_THROTTLE, "
    "'REGISTRATION': s.PORTAL_REGISTRATION_THROTTLE, "
    "'REGISTRATION_TOTAL': s.PORTAL_REGISTRATION_THROTTLE_TOTAL, "
    "'VERIFY_WITHIN': s.PORTAL_VERIFY_WITHIN, 'IS_VERIFIED': s.CENSUS_IS_VERIFIED, "
    "'TRUST_XFF': s.PORTAL_TRUST_X_FORWARDED_FOR}))"
)


def _run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run with only PATH and the given variables: no PORTAL_*/DJANGO_* from the caller."""
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'example'}",
            "PORTAL_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = _run([sys.executable, "-c", SHOW_SETTINGS], tmp_path, **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing-set"),
        pytest.param({"PORTAL_DEBUG": "0", "PORTAL_DEMO": "0"}, id="debug-and-demo-off"),
        pytest.param({"PORTAL_SECRET_KEY": DEVELOPMENT_KEY}, id="the-development-key"),
    ],
)
def test_settings_refuse_to_start_without_a_secret_key(tmp_path: Path, env: dict) -> None:
    """Outside debug and the demo, no (or the public) secret key is an ImproperlyConfigured."""
    result = _run([sys.executable, "-c", SHOW_SETTINGS], tmp_path, **env)

    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: PORTAL_SECRET_KEY" in result.stderr


def test_settings_with_a_secret_key_run_without_debug(tmp_path: Path) -> None:
    """A deployment's key is used; DEBUG is off; hosts come from PORTAL_ALLOWED_HOSTS."""
    values = _settings(
        tmp_path,
        PORTAL_SECRET_KEY="a-real-secret",
        PORTAL_ALLOWED_HOSTS="portal.example.org, www.portal.example.org",
    )

    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == "a-real-secret"
    assert values["ALLOWED_HOSTS"] == ["portal.example.org", "www.portal.example.org"]
    assert values["THROTTLE"] == [10, 600]
    assert values["REGISTRATION"] == [10, 3600]
    assert values["REGISTRATION_TOTAL"] == [200, 3600]
    assert values["VERIFY_WITHIN"] == 48 * 3600
    assert values["IS_VERIFIED"] == "portal.verification.is_verified"
    assert values["TRUST_XFF"] is False


def test_settings_default_hosts_are_loopback_only(tmp_path: Path) -> None:
    """Without PORTAL_ALLOWED_HOSTS a deployment answers to loopback names only."""
    values = _settings(tmp_path, PORTAL_SECRET_KEY="a-real-secret")

    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]


@pytest.mark.parametrize(
    ("env", "debug"),
    [({"PORTAL_DEMO": "1"}, False), ({"PORTAL_DEBUG": "1"}, True)],
    ids=["demo", "debug"],
)
def test_settings_in_demo_or_debug_use_the_development_key(
    tmp_path: Path, env: dict, debug: bool
) -> None:
    """The demo (DEBUG off) and DEBUG may run on the development key, testserver allowed."""
    values = _settings(tmp_path, **env)

    assert values["DEBUG"] is debug
    assert values["SECRET_KEY"] == DEVELOPMENT_KEY
    assert "testserver" in values["ALLOWED_HOSTS"]


def test_settings_read_the_throttle_from_the_environment(tmp_path: Path) -> None:
    """PORTAL_REFRESH_THROTTLE=N,SECONDS or off."""
    assert _settings(tmp_path, PORTAL_DEMO="1", PORTAL_REFRESH_THROTTLE="3,60")["THROTTLE"] == [
        3,
        60,
    ]
    assert _settings(tmp_path, PORTAL_DEMO="1", PORTAL_REFRESH_THROTTLE="off")["THROTTLE"] is None


def test_settings_read_the_registration_settings_from_the_environment(tmp_path: Path) -> None:
    """PORTAL_REGISTRATION_THROTTLE(_TOTAL)=N,SECONDS or off, PORTAL_VERIFY_WITHIN seconds;
    PORTAL_HTTPS trusts the proxy's X-Forwarded-For."""
    values = _settings(
        tmp_path,
        PORTAL_DEMO="1",
        PORTAL_REGISTRATION_THROTTLE="3,60",
        PORTAL_REGISTRATION_THROTTLE_TOTAL="off",
        PORTAL_VERIFY_WITHIN="600",
    )
    https = _settings(tmp_path, PORTAL_DEMO="1", PORTAL_HTTPS="1")

    assert values["REGISTRATION"] == [3, 60]
    assert values["REGISTRATION_TOTAL"] is None
    assert values["VERIFY_WITHIN"] == 600
    assert https["TRUST_XFF"] is True


def test_manage_py_refuses_to_start_without_a_key_but_the_demo_starts(tmp_path: Path) -> None:
    """manage.py check fails with the clear error; census_demo runs in demo mode on its own."""
    check = _run([sys.executable, "example/manage.py", "check"], tmp_path)
    demo = _run([sys.executable, "example/manage.py", "census_demo", "--help"], tmp_path)

    assert check.returncode != 0
    assert "PORTAL_SECRET_KEY is not set" in check.stderr
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "--members" in demo.stdout


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"PORTAL_DEMO": "1"}, id="demo"),
        pytest.param({"PORTAL_DEBUG": "1"}, id="debug"),
    ],
)
@pytest.mark.parametrize("hosts", ["portal.example.org", "localhost,*", ".example.org"])
def test_the_development_key_is_refused_for_a_public_host(
    tmp_path: Path, env: dict, hosts: str
) -> None:
    """The demo or DEBUG on the published key does not start when an allowed host is not
    loopback (its Django-Q2 tasks would be signed with a key anyone knows)."""
    result = _run(
        [sys.executable, "-c", SHOW_SETTINGS], tmp_path, PORTAL_ALLOWED_HOSTS=hosts, **env
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: The example's public development key" in result.stderr
    loopback = _settings(tmp_path, PORTAL_ALLOWED_HOSTS="localhost,127.0.0.1,[::1]", **env)
    assert loopback["SECRET_KEY"] == DEVELOPMENT_KEY


#: A key as a deployment makes one (check --deploy wants 50 characters, 5 of them unique).
DEPLOYMENT_KEY = "k3Vq9-Zr_L0wPz7Hc2Ys8NdXb4Mf6TgAe1Ju5Rn0Wq-Ko9Ip3Sl"


def _check_deploy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [sys.executable, "example/manage.py", "check", "--deploy"],
        tmp_path,
        PORTAL_SECRET_KEY=DEPLOYMENT_KEY,
        PORTAL_ALLOWED_HOSTS="portal.example.org",
        **env,
    )


def test_check_deploy_is_clean_with_portal_https(tmp_path: Path) -> None:
    """With a real key, a real host and PORTAL_HTTPS=1, ``check --deploy`` reports nothing;
    without the switch it names the HTTPS settings it sets (W004, W008, W012, W016)."""
    clean = _check_deploy(tmp_path, PORTAL_HTTPS="1")
    plain = _check_deploy(tmp_path)

    assert clean.returncode == 0, clean.stderr[-2000:]
    assert clean.stdout.strip() == "System check identified no issues (0 silenced)."
    assert clean.stderr == ""
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= set(
        re.findall(r"security\.W\d+", plain.stderr)
    )


def test_var_dir_is_created_private_and_made_private(tmp_path: Path) -> None:
    """$PORTAL_VAR_DIR (the SQLite file, the log) is created 0700; an existing one readable
    by others is made 0700."""
    created = tmp_path / "new" / "var"
    _settings(created, PORTAL_DEMO="1")
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    _settings(existing, PORTAL_DEMO="1")

    assert oct(created.stat().st_mode & 0o777) == oct(0o700)
    assert oct(existing.stat().st_mode & 0o777) == oct(0o700)


def test_registration_keeps_the_passwords_out_of_error_reports(rf: Any) -> None:
    """An error report of the registration view shows its passwords starred, not in clear."""
    from django.contrib.auth.models import AnonymousUser
    from django.views.debug import SafeExceptionReporterFilter

    request = rf.post(
        "/registro/", {"username": "12", "password1": "Clave-Secreta-1", "password2": "x"}
    )
    request.user = AnonymousUser()
    views.register(request)
    shown = SafeExceptionReporterFilter().get_post_parameters(request)

    assert "Clave-Secreta-1" not in str(shown)
    assert shown["password1"] == shown["password2"] == "********************"
    assert shown["username"] == "12"


@pytest.mark.django_db
def _change_form_data(client: Client, url: str, **changes: str) -> dict[str, Any]:
    """The admin change form's current values as POST data, with ``changes``."""
    form = client.get(url).context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or name == "password":
            continue
        if hasattr(field.widget, "widgets"):  # split date and time
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = part or ""
        elif isinstance(value, list | tuple):
            data[name] = [str(v) for v in value]
        else:
            data[name] = value
    return {**data, **changes}


def test_the_admin_history_of_a_member_never_holds_the_full_cedula(client: Client) -> None:
    """Staff edit two members in the admin: ``django_admin_log`` names them by their masked
    cédula (``Member.__str__``), in every column."""
    from django.contrib.admin.models import LogEntry

    from census.cedula import mask, scrub

    client.force_login(Member.objects.create_superuser(username="admin", password=PASSWORD))
    named, unnamed = (
        Member.objects.create_user("1023456789"),
        Member.objects.create_user("52111222"),
    )
    for member, changes in ((named, {"first_name": "Ana"}), (unnamed, {"role": "leader"})):
        url = reverse("admin:portal_member_change", args=[member.pk])
        assert client.post(url, _change_form_data(client, url, **changes)).status_code == 302

    entries = list(LogEntry.objects.values_list("object_id", "object_repr", "change_message"))
    assert sorted(repr_ for _, repr_, _ in entries) == [
        f"Ana ({mask('1023456789')})",
        f"Miembro {unnamed.pk} ({mask('52111222')})",
    ]
    for row in entries:
        text = " ".join(str(value) for value in row)
        assert scrub(text, "1023456789") == text and scrub(text, "52111222") == text
