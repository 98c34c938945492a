"""Floods that used to lock people out: mass registrations and logins, notification floods, concurrent login
bursts, lock-outs that hit the admin, and credentials that outlive a password change (issue 17, classes 4, 10)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from appliance import Session, demo_config
from ems.notifications import Notifications
from ems.users.auth import AuthRequest, Security, SecuritySettings
from ems.users.passwords import ScryptParams
from ems.users.sessions import SessionPolicy
from security_rig import PASSWORD, Rig
from support import FakeClock

FAST = ScryptParams(n=16)


def open_security(path: Path, clock: FakeClock, **policy) -> Security:
    return Security.open(path, now=clock, settings=SecuritySettings(scrypt=FAST, session=SessionPolicy(**policy)))


# -- registration ----------------------------------------------------------------------------------------------------

def test_registration_is_off_by_default(tmp_path: Path):
    rig = Rig(tmp_path)
    try:
        assert rig.store.config.web.allow_registration is False
        assert rig.call("GET", "/register")[0] == 403
        status, _, body = rig.call("POST", "/register", {"username": "mallory", "password": "tidal-basin-4711"})
        assert (status, body["field"]) == (403, "web.allow_registration")
        assert rig.security.users.get_by_username("mallory") is None
        assert "/register" not in rig.call("GET", "/login")[2]
    finally:
        rig.close()


def test_registration_does_not_reveal_taken_usernames(tmp_path: Path):
    rig = Rig(tmp_path, demo_config(web={"allow_registration": True}))
    rig.add_users()
    try:
        fresh = rig.call("POST", "/register", {"username": "newbie", "password": "tidal-basin-4711"})
        taken = rig.call("POST", "/register", {"username": "admin1", "password": "tidal-basin-4711"})
        assert fresh[0] == taken[0] == 202 and fresh[2] == taken[2]
        assert rig.security.users.get_by_username("newbie").role == "viewer"
        assert rig.security.login("admin1", PASSWORD, "127.0.0.1").ok  # the taken account is untouched
        html = rig.call("POST", "/register", raw=b"username=admin1&password=tidal-basin-4711",
                        content_type="application/x-www-form-urlencoded")
        assert html[0] == 303 and html[1]["Location"].endswith("/login?registered=1")
    finally:
        rig.close()


def test_500_registrations_from_one_address_are_refused_after_the_limit_and_the_admin_stays_logged_in(ems_factory):
    ems = ems_factory(demo_config(web={"allow_registration": True}))
    admin = ems.login()
    anonymous = Session(ems.base_url)
    statuses = []
    for i in range(500):
        status, _ = anonymous.request("POST", "/register", {"username": f"bot{i:03d}", "password": f"tidal-basin-{i}x"})
        statuses.append(status)
    assert statuses.count(202) <= 5 and statuses.count(429) >= 495, {s: statuses.count(s) for s in set(statuses)}
    assert set(statuses) <= {202, 429}
    status, me = admin.request("GET", "/api/me")
    assert status == 200 and me["user"]["username"] == "admin"
    status, users = admin.request("GET", "/api/users")
    assert len(users["users"]) <= 6


def test_registrations_are_limited_overall_too(tmp_path: Path, clock: FakeClock):
    security = open_security(tmp_path, clock)
    answers = [security.register({"username": f"user{i:03d}", "password": f"tidal-basin-{i}x"}, f"10.0.{i}.1")[0].status
               for i in range(60)]
    assert answers.count(202) == 30 and set(answers[30:]) == {429}
    clock.t += 3601
    assert security.register({"username": "latecomer", "password": "tidal-basin-99x"}, "10.9.9.9")[0].status == 202


# -- sessions ----------------------------------------------------------------------------------------------------------

def test_mass_accounts_logging_in_never_end_the_admins_session(tmp_path: Path, clock: FakeClock):
    security = open_security(tmp_path, clock, max_per_user=3, max_total=100)
    security.users.create("root", PASSWORD, role="admin")
    admin = security.login("root", PASSWORD, "192.168.1.20")
    for i in range(60):
        security.users.create(f"bot{i:02d}", PASSWORD)
    refused = 0
    for round_ in range(5):
        for i in range(60):
            clock.t += 1
            result = security.login(f"bot{i:02d}", PASSWORD, f"10.0.{i}.{round_ + 1}")
            refused += result.status == 503
    assert refused > 0  # the store filled up: new bot logins were refused, nobody was logged out for them
    assert security.authorize(AuthRequest("GET", "192.168.1.20", session_cookie=admin.set_session_cookie), "read").ok
    assert security.login("root", PASSWORD, "192.168.1.21").ok  # and the admin still gets a new session
    assert all(len(security.sessions.for_user(u.id)) <= 3 for u in security.users.list_users())


# -- notifications -------------------------------------------------------------------------------------------------------

def test_a_flood_of_lesser_notifications_never_pushes_out_a_dso_trip_or_an_alarm():
    notes = Notifications(lambda: 0.0, maxlen=100, max_alarms=100)
    trip = notes.add("error", "dso", "DSO shutdown order: battery stopped, PCS disabled")
    limit = notes.add("warning", "dso", "power limited: DSO limit 30 %")
    alarm = notes.add("critical", "safety", "safe state: insulation resistance low")
    for i in range(10_000):
        notes.add("info", "users", f"new account 'bot{i}' registered (viewer)")
        notes.add("warning", "grid", "grid connection at 85 % of 15 kW")
    shown = notes.recent(50)
    assert {trip.id, limit.id, alarm.id} <= {n.id for n in shown}
    assert [n.id for n in shown] == sorted((n.id for n in shown), reverse=True)
    assert [n.id for n in notes.alarms(10)] == [alarm.id, limit.id, trip.id]


# -- login throttle ------------------------------------------------------------------------------------------------------

def test_a_concurrent_burst_of_wrong_passwords_gets_no_more_checks_than_the_threshold(tmp_path: Path):
    security = Security.open(tmp_path, settings=SecuritySettings(scrypt=ScryptParams(n=2 ** 13)))
    security.users.create("root", PASSWORD, role="admin")
    start = threading.Barrier(21)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        start.wait(timeout=10)
        status = security.login("root", f"guess-number-{i}", "192.168.1.66").status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == 21
    assert statuses.count(401) == 10 and statuses.count(429) == 11, statuses


def test_an_attacker_in_the_admins_network_cannot_lock_the_admin_out(tmp_path: Path, clock: FakeClock):
    security = open_security(tmp_path, clock)
    security.users.create("root", PASSWORD, role="admin")
    assert security.login("root", PASSWORD, "2001:db8:1:2::20").ok  # the admin's laptop, earlier
    assert security.login("root", PASSWORD, "192.168.1.20").ok
    for i in range(50):  # a neighbour in the same /64, and attackers all over
        security.login("root", f"guess-number-{i}", "2001:db8:1:2::66")
        security.login("root", f"guess-again-{i}", f"10.{i}.0.1")
    assert security.login("root", PASSWORD, "2001:db8:1:2::20").ok
    assert security.login("root", PASSWORD, "192.168.1.20").ok
    assert security.login("root", PASSWORD, "2001:db8:1:2::66").status == 429  # the attacker is still stopped


# -- credentials that must die with the password -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["own change", "admin sets", "reset"])
def test_api_tokens_are_revoked_when_the_password_changes(tmp_path: Path, clock: FakeClock, how: str):
    security = open_security(tmp_path, clock)
    security.users.create("root", PASSWORD, role="admin")
    olga = security.users.create("olga", PASSWORD, role="operator")
    plaintext, _ = security.tokens.create(olga.id, "scada")
    bearer = AuthRequest("GET", "192.168.1.20", authorization=f"Bearer {plaintext}")
    assert security.authorize(bearer, "read").ok
    if how == "own change":
        principal = security.authorize(bearer, "own_account").principal
        assert security.change_own_password(principal, PASSWORD, "river-delta-0815", "192.168.1.20").ok
    elif how == "admin sets":
        security.set_password(olga.id, "river-delta-0815")
    else:
        security.reset_password("olga")
    assert security.authorize(bearer, "read").status == 401
    assert security.tokens.list_for_user(olga.id) == []
