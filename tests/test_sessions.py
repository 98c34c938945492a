"""Login sessions: they expire, they end for good on logout (also across a restart), and the file on disk
holds no usable cookie."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.users.sessions import SessionPolicy, SessionStore, check_csrf
from support import FakeClock

POLICY = SessionPolicy(idle_timeout_s=1800, absolute_timeout_s=8 * 3600, persist_interval_s=60, max_per_user=3)


@pytest.fixture
def sessions(tmp_path: Path, clock: FakeClock) -> SessionStore:
    return SessionStore(tmp_path / "sessions.json", now=clock, policy=POLICY)


def test_a_new_session_finds_its_user_and_the_file_holds_no_cookie(sessions: SessionStore) -> None:
    token, session = sessions.create(user_id=7, credential_version=3)
    found = sessions.lookup(token)
    assert found is not None and (found.user_id, found.credential_version) == (7, 3)
    stored = sessions.path.read_text()
    assert token not in stored and session.key in stored


def test_idle_sessions_expire_and_activity_keeps_them_alive(sessions: SessionStore, clock: FakeClock) -> None:
    busy, _ = sessions.create(1, 1)
    idle, _ = sessions.create(2, 1)
    for _ in range(3):
        clock.t += 1200  # 20 min, within the 30 min idle timeout
        assert sessions.lookup(busy) is not None
    assert sessions.lookup(idle) is None  # 60 min without a request


def test_the_absolute_timeout_ends_even_a_busy_session(sessions: SessionStore, clock: FakeClock) -> None:
    token, _ = sessions.create(1, 1)
    while clock.t < 1_700_000_000.0 + 8 * 3600 - 600:
        clock.t += 600
        assert sessions.lookup(token) is not None
    clock.t += 601
    assert sessions.lookup(token) is None


def test_logout_holds_across_a_restart_while_live_logins_survive_it(tmp_path: Path, clock: FakeClock) -> None:
    store = SessionStore(tmp_path / "sessions.json", now=clock, policy=POLICY)
    ended, _ = store.create(1, 1)
    kept, _ = store.create(2, 1)
    assert store.end(ended)
    restarted = SessionStore(tmp_path / "sessions.json", now=clock, policy=POLICY)
    assert restarted.lookup(ended) is None
    assert restarted.lookup(kept) is not None


def test_ending_all_sessions_of_a_user_leaves_other_users_logged_in(sessions: SessionStore) -> None:
    mine = [sessions.create(1, 1)[0] for _ in range(2)]
    theirs, _ = sessions.create(2, 1)
    assert sessions.end_all_for_user(1) == 2
    assert all(sessions.lookup(t) is None for t in mine)
    assert sessions.lookup(theirs) is not None


def test_login_rotates_the_token(sessions: SessionStore) -> None:
    before_login, _ = sessions.create(1, 1)
    after_login, _ = sessions.create(1, 1, replace_token=before_login)
    assert after_login != before_login
    assert sessions.lookup(before_login) is None and sessions.lookup(after_login) is not None


def test_a_user_holds_at_most_max_per_user_sessions_the_oldest_go(sessions: SessionStore,
                                                                   clock: FakeClock) -> None:
    tokens = []
    for _ in range(4):
        clock.t += 1
        tokens.append(sessions.create(1, 1)[0])
    assert sessions.lookup(tokens[0]) is None
    assert all(sessions.lookup(t) is not None for t in tokens[1:])


def test_last_seen_is_written_at_most_once_per_interval(sessions: SessionStore, clock: FakeClock) -> None:
    token, _ = sessions.create(1, 1)
    written = sessions.path.read_bytes()
    for _ in range(5):
        clock.t += 10
        sessions.lookup(token)
    assert sessions.path.read_bytes() == written  # 50 s of requests: no flash write
    clock.t += 15
    sessions.lookup(token)
    [stored] = json.loads(sessions.path.read_text())["sessions"]
    assert stored["last_seen_ts"] == clock.t


def test_a_corrupt_sessions_file_only_costs_a_new_login(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sessions.json"
    path.write_text('{"version": 1, "sessions": [{"key": ')
    store = SessionStore(path, now=clock, policy=POLICY)
    assert len(store) == 0
    token, _ = store.create(1, 1)
    assert SessionStore(path, now=clock, policy=POLICY).lookup(token) is not None


def test_sessions_from_the_future_are_not_trusted(tmp_path: Path, clock: FakeClock) -> None:
    store = SessionStore(tmp_path / "sessions.json", now=clock, policy=POLICY)
    token, _ = store.create(1, 1)
    clock.t -= 86_400  # the wall clock went back a day (RTC lost, then NTP)
    assert store.lookup(token) is None


@given(st.text(max_size=200))
@settings(max_examples=100, deadline=None)
def test_any_cookie_value_is_a_miss_not_a_crash(cookie: str) -> None:
    store = SessionStore(None, now=FakeClock(), policy=POLICY)
    store.create(1, 1)
    assert store.lookup(cookie) is None
    assert store.end(cookie) is False


def test_csrf_token_matches_only_its_own_session() -> None:
    store = SessionStore(None, now=FakeClock(), policy=POLICY)
    _, mine = store.create(1, 1)
    _, other = store.create(2, 1)
    assert check_csrf(mine, mine.csrf_token)
    for wrong in (None, "", other.csrf_token, mine.csrf_token[:-1], mine.csrf_token + "x", mine.key, 42):
        assert not check_csrf(mine, wrong)


@given(st.text(max_size=64))
@settings(max_examples=100, deadline=None)
def test_no_other_string_passes_the_csrf_check(guess: str) -> None:
    store = SessionStore(None, now=FakeClock(), policy=POLICY)
    _, session = store.create(1, 1)
    assert check_csrf(session, guess) is (guess == session.csrf_token)
