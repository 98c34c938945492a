"""The user store as an installer and an admin meet it: accounts survive restarts and crashes, bad input is
refused naming the field, and the appliance can never be left without an admin."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.users.passwords import PasswordHasher, ScryptParams
from ems.users.storage import StorageCorruptError
from ems.users.store import UserError, UserStore

FAST = PasswordHasher(ScryptParams(n=16, r=8, p=1))
PW = "tidal-basin-4711"


def store_at(path: Path) -> UserStore:
    return UserStore(path, hasher=FAST)


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return store_at(tmp_path / "users.json")


def test_users_survive_a_restart_without_their_password_hash_leaking(store: UserStore) -> None:
    created = store.create("Anna", PW, role="operator", name="Anna Huber", email="anna@example.com")
    again = store_at(store.path)
    [loaded] = again.list_users()
    assert loaded == created
    assert loaded.username == "anna"
    assert again.authenticate("anna", PW)[0] == "ok"
    assert "password" not in json.dumps(loaded.to_json())
    assert "scrypt$" in store.path.read_text()  # the hash lives only in the file


@pytest.mark.parametrize("username", ["ab", "a" * 33, "anna huber", "anna@home", "<script>", "", "ännä"])
def test_bad_usernames_are_refused_naming_the_field(store: UserStore, username: str) -> None:
    with pytest.raises(UserError) as err:
        store.create(username, PW)
    assert (err.value.status, err.value.field) == (400, "username")
    assert store.list_users() == []


@pytest.mark.parametrize("kwargs, field", [
    ({"role": "root"}, "role"), ({"email": "not-an-address"}, "email"), ({"name": "x" * 101}, "name"),
    ({"name": 42}, "name"),
])
def test_bad_fields_are_refused_naming_the_field(store: UserStore, kwargs: dict, field: str) -> None:
    with pytest.raises(UserError) as err:
        store.create("anna", PW, **kwargs)
    assert (err.value.status, err.value.field) == (400, field)


def test_weak_password_is_refused_with_the_policy_message(store: UserStore) -> None:
    with pytest.raises(UserError) as err:
        store.create("anna", "anna")
    assert err.value.field == "password" and "at least 10 characters" in err.value.message


def test_a_username_cannot_be_taken_twice_whatever_the_case(store: UserStore) -> None:
    store.create("anna", PW)
    with pytest.raises(UserError) as err:
        store.create("ANNA", PW)
    assert err.value.status == 409


def test_json_body_registration_cannot_choose_its_role(store: UserStore) -> None:
    with pytest.raises(UserError) as err:
        store.create_from_json({"username": "eve", "password": PW, "role": "admin"}, force_role="viewer")
    assert err.value.field == "role"
    assert store.create_from_json({"username": "eve", "password": PW}, force_role="viewer").role == "viewer"


@given(name=st.text(max_size=70).filter(lambda s: all(ord(c) >= 32 and not 0xD800 <= ord(c) <= 0xDFFF
                                                       for c in s)))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_names_with_html_are_stored_exactly_as_given(tmp_path: Path, name: str) -> None:
    store = store_at(tmp_path / f"users-{random.random()}.json")
    for given_name in (name, f"<script>alert('{name}')</script>"):
        user = store.create(f"u{len(store.list_users())}x", PW, name=given_name)
        assert store_at(store.path).get(user.id).name == given_name


def test_the_last_enabled_admin_cannot_be_deleted_demoted_or_disabled(store: UserStore) -> None:
    admin = store.create("root", PW, role="admin")
    for attempt in (lambda: store.delete(admin.id), lambda: store.update(admin.id, {"role": "operator"}),
                    lambda: store.update(admin.id, {"disabled": True})):
        with pytest.raises(UserError) as err:
            attempt()
        assert err.value.status == 409 and "last enabled admin" in err.value.message
    assert store.get(admin.id) == admin


def test_a_disabled_admin_does_not_count_as_the_remaining_admin(store: UserStore) -> None:
    first = store.create("root", PW, role="admin")
    second = store.create("root2", PW, role="admin")
    store.update(second.id, {"disabled": True})
    with pytest.raises(UserError):
        store.delete(first.id)
    store.update(second.id, {"disabled": False})
    store.delete(first.id)
    assert [u.username for u in store.list_users()] == ["root2"]


def test_two_admins_deleting_each_other_at_once_leave_one_admin(store: UserStore) -> None:
    admins = [store.create(f"root{i}", PW, role="admin") for i in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def delete(user_id: int) -> None:
        barrier.wait()
        try:
            store.delete(user_id)
            outcomes.append("deleted")
        except UserError:
            outcomes.append("refused")

    threads = [threading.Thread(target=delete, args=(a.id,)) for a in admins]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(outcomes) == ["deleted", "refused"]
    assert store.enabled_admin_count() == 1


def test_ensure_admin_creates_admin_once_with_a_random_password(tmp_path: Path) -> None:
    first, second = store_at(tmp_path / "a.json"), store_at(tmp_path / "b.json")
    password = first.ensure_admin()
    assert password and password != second.ensure_admin()
    assert first.authenticate("admin", password)[0] == "ok"
    assert first.get_by_username("admin").role == "admin"
    assert first.ensure_admin() is None and len(first.list_users()) == 1


def test_reset_password_from_another_process_replaces_the_old_one(store: UserStore) -> None:
    user = store.create("anna", PW)
    other_process = store_at(store.path)
    new_password = other_process.reset_password("ANNA")
    assert store.authenticate("anna", PW) == ("wrong", None)
    outcome, logged_in = store.authenticate("anna", new_password)
    assert outcome == "ok" and logged_in.credential_version == user.credential_version + 1
    assert logged_in.last_login_ts is not None


def test_a_disabled_user_is_told_so_only_with_the_right_password(store: UserStore) -> None:
    user = store.create("anna", PW)
    store.update(user.id, {"disabled": True})
    assert store.authenticate("anna", "wrong-password-1") == ("wrong", None)
    assert store.authenticate("anna", PW)[0] == "disabled"
    assert store.authenticate("nobody", PW) == ("wrong", None)


def test_change_password_needs_the_current_one(store: UserStore) -> None:
    user = store.create("anna", PW)
    with pytest.raises(UserError) as err:
        store.change_password(user.id, "not-the-password", "river-delta-0815")
    assert (err.value.status, err.value.field) == (400, "current_password")
    store.change_password(user.id, PW, "river-delta-0815")
    assert store.authenticate("anna", "river-delta-0815")[0] == "ok"


def test_ids_of_deleted_users_are_never_reused(store: UserStore) -> None:
    store.create("root", PW, role="admin")
    gone = store.create("anna", PW)
    store.delete(gone.id)
    assert store.create("bert", PW).id > gone.id
    assert store_at(store.path).create("carl", PW).id > gone.id + 1


def test_unknown_update_fields_are_refused(store: UserStore) -> None:
    user = store.create("anna", PW)
    with pytest.raises(UserError) as err:
        store.update(user.id, {"password_hash": "scrypt$2$1$1$AAAA$AAAA"})
    assert err.value.field == "password_hash"
    with pytest.raises(UserError) as err:
        store.update(999, {"name": "x"})
    assert err.value.status == 404


def test_concurrent_creates_from_many_threads_lose_nobody(store: UserStore) -> None:
    def make(prefix: str) -> None:
        for i in range(5):
            store.create(f"{prefix}{i}", PW)

    threads = [threading.Thread(target=make, args=(f"t{n}u",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    users = store_at(store.path).list_users()
    assert len(users) == 30 and len({u.id for u in users}) == 30


@pytest.mark.parametrize("damage, problem", [
    (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
    (lambda raw: b"", "empty"),
    (lambda raw: b"[1, 2]", "expected an object"),
    (lambda raw: raw.replace(b'"role"', b'"rolle"'), "'role'"),
])
def test_a_damaged_file_is_a_clear_error_pointing_at_the_backup(store: UserStore, damage, problem: str) -> None:
    store.create("root", PW, role="admin")
    store.create("anna", PW)  # second write: the first version is now users.json.bak
    backup = store.path.with_name("users.json.bak")
    assert backup.exists()
    store.path.write_bytes(damage(store.path.read_bytes()))
    with pytest.raises(StorageCorruptError) as err:
        store_at(store.path)
    assert problem in str(err.value) and str(store.path) in str(err.value) and "users.json.bak" in str(err.value)
    os.replace(backup, store.path)  # the documented way back
    assert [u.username for u in store_at(store.path).list_users()] == ["root"]


CREATOR = textwrap.dedent("""
    import sys
    from ems.users.passwords import PasswordHasher, ScryptParams
    from ems.users.store import UserStore
    store = UserStore(sys.argv[1], hasher=PasswordHasher(ScryptParams(n=16)))
    for i in range(15):
        store.create(f"{sys.argv[2]}{i:02d}", "tidal-basin-4711")
""")


def test_two_processes_creating_users_at_once_lose_nobody(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store_at(path)
    children = [subprocess.Popen([sys.executable, "-c", CREATOR, str(path), prefix]) for prefix in ("web", "cli")]
    for child in children:
        assert child.wait(timeout=30) == 0
    users = store_at(path).list_users()
    assert len(users) == 30 and len({u.id for u in users}) == 30


WRITER = textwrap.dedent("""
    import itertools, sys
    from ems.users.passwords import PasswordHasher, ScryptParams
    from ems.users.store import UserStore
    store = UserStore(sys.argv[1], hasher=PasswordHasher(ScryptParams(n=16)))
    print("ready", flush=True)
    for i in itertools.count():
        name = f"user{i % 40:02d}"
        user = store.get_by_username(name)
        if user is None:
            store.create(name, f"secret-{name}-pw", role="operator", name=f"<i>{name}</i>", email=f"{name}@example.com")
        elif i % 3 == 0:
            store.delete(user.id)
        else:
            store.update(user.id, {"name": f"<i>{name}</i> " + "Ü" * (i % 80)})
""")


def test_kill_9_during_user_writes_leaves_a_loadable_store_of_complete_users(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    rng = random.Random()
    seen_users = 0
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.5))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        store = store_at(path)  # must load
        users = store.list_users()
        seen_users = max(seen_users, len(users))
        for user in users:
            assert user.role == "operator" and user.email == f"{user.username}@example.com"
            assert user.name.startswith(f"<i>{user.username}</i>")
            assert store.authenticate(user.username, f"secret-{user.username}-pw")[0] == "ok"
        assert not list(tmp_path.glob(".users.json.*.tmp"))  # leftovers of the killed write are cleaned up
    assert seen_users > 0
