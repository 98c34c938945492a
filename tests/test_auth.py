"""Request authentication as a browser, an API client and an attacker meet it: CSRF, logout, password changes,
throttling, API tokens and the role table."""
from __future__ import annotations

from pathlib import Path

import pytest

from ems.users.auth import AuthRequest, AuthResult, Security, SecuritySettings
from ems.users.passwords import ScryptParams
from ems.users.permissions import ACTIONS, Principal, allowed
from ems.users.store import UserError
from ems.users.throttle import LoginThrottle, ThrottlePolicy, address_key
from support import FakeClock

PW = "tidal-basin-4711"
HOME, ATTACKER = "192.168.1.20", "192.168.1.66"


def open_security(data_dir: Path, clock: FakeClock) -> Security:
    return Security.open(data_dir, now=clock, settings=SecuritySettings(scrypt=ScryptParams(n=16)))


@pytest.fixture
def sec(tmp_path: Path, clock: FakeClock) -> Security:
    security = open_security(tmp_path, clock)
    security.users.create("root", PW, role="admin")
    security.users.create("olga", PW, role="operator")
    security.users.create("vera", PW, role="viewer")
    return security


def login(sec: Security, username: str, addr: str = HOME) -> AuthResult:
    result = sec.login(username, PW, addr)
    assert result.ok, result.message
    return result


def request(result: AuthResult, method: str = "GET", csrf: str | None = None, addr: str = HOME) -> AuthRequest:
    return AuthRequest(method=method, client_addr=addr, session_cookie=result.set_session_cookie, csrf_token=csrf)


# -- CSRF ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"])
def test_state_changing_requests_without_or_with_a_wrong_csrf_token_get_403(sec: Security, method: str) -> None:
    session = login(sec, "root")
    for csrf in (None, "", "forged-token-value", login(sec, "olga").csrf_token):
        result = sec.authorize(request(session, method, csrf), "configure")
        assert result.status == 403 and "CSRF" in result.message and result.principal is None
    assert sec.authorize(request(session, method, session.csrf_token), "configure").ok


def test_reading_needs_no_csrf_token(sec: Security) -> None:
    result = sec.authorize(request(login(sec, "vera"), "GET"), "read")
    assert result.ok and result.principal == Principal(3, "vera", "viewer", "session")


def test_api_tokens_need_no_csrf_token(sec: Security) -> None:
    plaintext, _ = sec.tokens.create(2, "heat pump bridge")
    req = AuthRequest("POST", ATTACKER, authorization=f"Bearer {plaintext}")
    result = sec.authorize(req, "operate")
    assert result.ok and result.principal == Principal(2, "olga", "operator", "token")


# -- sessions end ----------------------------------------------------------------------------------------------

def test_a_session_cookie_replayed_after_logout_gets_401_even_after_a_restart(sec: Security, tmp_path: Path,
                                                                             clock: FakeClock) -> None:
    session = login(sec, "olga")
    assert sec.authorize(request(session), "read").ok
    out = sec.logout(session.set_session_cookie)
    assert out.clear_session_cookie
    replay = sec.authorize(request(session), "read")
    assert replay.status == 401 and replay.clear_session_cookie
    assert open_security(tmp_path, clock).authorize(request(session), "read").status == 401


def test_changing_ones_password_ends_every_old_session_and_keeps_the_changer_logged_in(sec: Security) -> None:
    laptop, phone = login(sec, "olga"), login(sec, "olga")
    principal = sec.authorize(request(laptop), "own_account").principal
    changed = sec.change_own_password(principal, PW, "river-delta-0815", HOME)
    assert changed.ok and changed.set_session_cookie
    assert sec.authorize(request(laptop), "read").status == 401
    assert sec.authorize(request(phone), "read").status == 401
    assert sec.authorize(request(changed), "read").ok


def test_a_wrong_current_password_changes_nothing(sec: Security) -> None:
    session = login(sec, "olga")
    principal = sec.authorize(request(session), "own_account").principal
    result = sec.change_own_password(principal, "not-my-password", "river-delta-0815", HOME)
    assert (result.status, result.field) == (400, "current_password")
    assert sec.authorize(request(session), "read").ok


def test_a_password_reset_by_another_process_ends_the_running_sessions(sec: Security, tmp_path: Path,
                                                                       clock: FakeClock) -> None:
    session = login(sec, "root")
    cli = open_security(tmp_path, clock)  # `ems user reset-password root` while the service runs
    new_password = cli.users.reset_password("root")
    assert sec.authorize(request(session), "read").status == 401
    assert sec.login("root", new_password, HOME).ok


def test_admin_password_reset_and_disabling_end_that_users_sessions(sec: Security) -> None:
    reset, disabled = login(sec, "olga"), login(sec, "vera")
    sec.set_password(2, "river-delta-0815")
    sec.update_user(3, {"disabled": True})
    assert sec.authorize(request(reset), "read").status == 401
    assert sec.authorize(request(disabled), "read").status == 401
    refused = sec.login("vera", PW, HOME)
    assert refused.status == 403 and "disabled" in refused.message


def test_login_rotates_the_session_cookie(sec: Security) -> None:
    before = login(sec, "vera")
    after = sec.login("vera", PW, HOME, old_session_token=before.set_session_cookie)
    assert after.ok and after.set_session_cookie != before.set_session_cookie
    assert sec.authorize(request(before), "read").status == 401


def test_idle_session_expires_and_the_cookie_is_cleared(sec: Security, clock: FakeClock) -> None:
    session = login(sec, "vera")
    clock.t += sec.sessions.policy.idle_timeout_s + 1
    result = sec.authorize(request(session), "read")
    assert result.status == 401 and result.clear_session_cookie


# -- throttling ------------------------------------------------------------------------------------------------

def test_20_wrong_passwords_from_one_address_are_throttled_while_the_user_logs_in_from_home(sec: Security) -> None:
    statuses = [sec.login("root", f"guess-number-{i}", ATTACKER).status for i in range(20)]
    assert statuses[0] == 401 and statuses[-1] == 429
    assert statuses.count(401) == 10  # a throttled attempt does not even check the password
    throttled = sec.login("root", PW, ATTACKER)  # even the right password, from the attacker's address
    assert throttled.status == 429 and int(throttled.headers()["Retry-After"]) > 0
    assert sec.login("root", PW, HOME).ok


def test_an_address_lockout_ends_after_retry_after_and_grows_with_more_failures(sec: Security,
                                                                                clock: FakeClock) -> None:
    for i in range(10):
        sec.login("root", f"guess-number-{i}", ATTACKER)
    first = sec.login("root", "guess-again-1", ATTACKER)
    clock.t += first.retry_after_s
    assert sec.login("root", "guess-again-2", ATTACKER).status == 401  # checked again, and wrong
    second = sec.login("root", "guess-again-3", ATTACKER)
    assert second.status == 429 and second.retry_after_s > first.retry_after_s


def test_logging_into_ones_own_account_does_not_reset_the_address_counter(sec: Security) -> None:
    # An attacker holding a viewer account must not be able to wipe their failures between guesses.
    statuses = []
    for i in range(20):
        statuses.append(sec.login("root", f"guess-number-{i}", ATTACKER).status)
        if statuses[-1] == 401:
            sec.login("vera", PW, ATTACKER)
    assert statuses.count(401) == 10 and statuses[-1] == 429


def test_many_addresses_against_one_user_only_slow_the_user_down(sec: Security, clock: FakeClock) -> None:
    for i in range(40):
        sec.login("vera", f"guess-number-{i}", f"10.0.{i}.1")
    slowed = sec.login("vera", PW, HOME)
    assert slowed.status == 429 and slowed.retry_after_s <= 30
    clock.t += slowed.retry_after_s
    assert sec.login("vera", PW, HOME).ok


def test_ipv6_neighbours_in_one_64_share_an_address_counter() -> None:
    throttle = LoginThrottle(ThrottlePolicy(3, 600, 60, 600), ThrottlePolicy(100, 600, 1, 5))
    for i in range(3):
        throttle.record_failure("root", f"2001:db8:1:2::{i + 1}", 1000.0)
    assert not throttle.check("root", "2001:db8:1:2:ffff::9", 1000.0).allowed
    assert throttle.check("root", "2001:db8:1:3::1", 1000.0).allowed
    assert address_key("::ffff:192.168.1.5") == address_key("192.168.1.5")


def test_throttle_state_stays_bounded_under_a_flood_of_usernames() -> None:
    throttle = LoginThrottle(max_keys=100)
    for i in range(1000):
        throttle.record_failure(f"user{i}", f"10.1.{i // 256}.{i % 256}", 1000.0 + i)
    assert len(throttle._counters) <= 100


# -- API tokens ------------------------------------------------------------------------------------------------

def test_an_api_token_is_shown_once_listed_without_secret_and_dies_when_revoked(sec: Security,
                                                                             clock: FakeClock) -> None:
    plaintext, token = sec.tokens.create(2, "scada")
    listed = sec.tokens.list_for_user(2)
    assert [t.id for t in listed] == [token.id]
    assert plaintext not in str(listed[0].to_json()) and "sha256" not in listed[0].to_json()
    assert plaintext not in sec.tokens.path.read_text()
    req = AuthRequest("GET", HOME, authorization=f"Bearer {plaintext}")
    assert sec.authorize(req, "read").ok
    assert sec.tokens.get(token.id).last_used_ts == clock.t
    with pytest.raises(UserError):
        sec.tokens.revoke(token.id, user_id=3)  # someone else's token
    sec.tokens.revoke(token.id, user_id=2)
    denied = sec.authorize(req, "read")
    assert denied.status == 401 and "WWW-Authenticate" in denied.headers()


def test_last_used_is_written_at_most_every_few_minutes(sec: Security, clock: FakeClock) -> None:
    plaintext, token = sec.tokens.create(2, "poller")
    req = AuthRequest("GET", HOME, authorization=f"Bearer {plaintext}")
    sec.authenticate(req)
    first_use = clock.t
    clock.t += 60
    sec.authenticate(req)
    assert sec.tokens.get(token.id).last_used_ts == first_use
    clock.t += sec.tokens.touch_interval_s
    sec.authenticate(req)
    assert sec.tokens.get(token.id).last_used_ts == clock.t


@pytest.mark.parametrize("header", ["Bearer", "Basic cm9vdDpwdw==", "Bearer ems_tooshort", "Token abc",
                                    "Bearer " + "ems_" + "A" * 43])
def test_bad_authorization_headers_get_401_with_a_bearer_challenge(sec: Security, header: str) -> None:
    result = sec.authorize(AuthRequest("GET", HOME, authorization=header), "read")
    assert result.status == 401 and result.headers()["WWW-Authenticate"].startswith("Bearer")


def test_deleting_a_user_kills_their_tokens_and_sessions(sec: Security) -> None:
    plaintext, _ = sec.tokens.create(2, "scada")
    session = login(sec, "olga")
    sec.delete_user(2)
    assert sec.tokens.list_for_user(2) == []
    assert sec.authorize(AuthRequest("GET", HOME, authorization=f"Bearer {plaintext}"), "read").status == 401
    assert sec.authorize(request(session), "read").status == 401


def test_a_disabled_users_token_stops_working(sec: Security) -> None:
    plaintext, _ = sec.tokens.create(3, "display")
    sec.update_user(3, {"disabled": True})
    assert sec.authorize(AuthRequest("GET", HOME, authorization=f"Bearer {plaintext}"), "read").status == 401


# -- roles -----------------------------------------------------------------------------------------------------

# The table from the issue, written out independently of the code: admin everything (including the
# safety-relevant settings, connection tests and the audit log); operator reads, operates and configures but
# neither changes safety settings nor manages users; viewer reads only; everyone manages their own account.
EXPECTED = {
    "admin": {"read", "operate", "configure", "configure_safety", "commission", "audit", "manage_users",
              "own_account"},
    "operator": {"read", "operate", "configure", "own_account"},
    "viewer": {"read", "own_account"},
}


@pytest.mark.parametrize("username, role", [("root", "admin"), ("olga", "operator"), ("vera", "viewer")])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_role_gets_exactly_its_actions(sec: Security, username: str, role: str, action: str) -> None:
    session = login(sec, username)
    result = sec.authorize(request(session, "POST", session.csrf_token), action)
    assert result.ok is (action in EXPECTED[role])
    if not result.ok:
        assert result.status == 403 and role in result.message


def test_unknown_roles_and_actions_are_denied() -> None:
    assert not allowed("superuser", "read")
    assert not allowed("admin", "reboot")


def test_a_demoted_user_loses_the_right_with_the_next_request(sec: Security) -> None:
    session = login(sec, "olga")
    assert sec.authorize(request(session, "POST", session.csrf_token), "configure").ok
    sec.update_user(2, {"role": "viewer"})
    assert sec.authorize(request(session, "POST", session.csrf_token), "configure").status == 403


def test_without_credentials_protected_routes_get_401_and_public_ones_pass(sec: Security) -> None:
    anonymous = AuthRequest("GET", HOME)
    assert sec.authorize(anonymous, "read").status == 401
    public = sec.authorize(anonymous, None)
    assert public.ok and public.principal is None
    dead_cookie = sec.authorize(AuthRequest("GET", HOME, session_cookie="x" * 43), None)
    assert dead_cookie.ok and dead_cookie.clear_session_cookie


def test_deleting_the_last_admin_is_refused_and_changes_nothing(sec: Security) -> None:
    session = login(sec, "root")
    with pytest.raises(UserError) as err:
        sec.delete_user(1)
    assert err.value.status == 409
    assert sec.authorize(request(session), "manage_users").ok


def test_cookie_flags(sec: Security) -> None:
    opts = sec.cookie_options(secure=True)
    assert opts["httponly"] and opts["samesite"] == "lax" and opts["secure"] and opts["path"] == "/"
    assert not sec.cookie_options(secure=False)["secure"]
