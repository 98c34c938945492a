"""Password hashing and policy: what an installer setting a password, and an attacker reading the file, see."""
from __future__ import annotations

import base64
import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ems.users.passwords import (MIN_LENGTH, PasswordHasher, ScryptParams, check_policy, generate_password,
                                 normalize)

# Cheap parameters keep property tests fast; the format and the maths are the same as in production.
FAST = PasswordHasher(ScryptParams(n=16, r=8, p=1))
passwords = st.text(min_size=1, max_size=40)


@given(passwords)
@settings(max_examples=60, deadline=None)
def test_any_password_verifies_against_its_own_hash(password: str) -> None:
    assert FAST.verify(password, FAST.hash(password))


@given(passwords, passwords)
@settings(max_examples=60, deadline=None)
def test_a_different_password_never_verifies(right: str, wrong: str) -> None:
    assume(normalize(right) != normalize(wrong))
    assert not FAST.verify(wrong, FAST.hash(right))


def test_same_password_gets_a_different_salt_and_hash_each_time() -> None:
    first, second = FAST.hash("tidal-basin-4711"), FAST.hash("tidal-basin-4711")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]  # salt
    assert FAST.verify("tidal-basin-4711", first) and FAST.verify("tidal-basin-4711", second)


def test_default_cost_parameters_are_stored_with_the_hash() -> None:
    encoded = PasswordHasher().hash("tidal-basin-4711")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    assert "tidal" not in encoded


def test_raising_the_cost_keeps_old_hashes_working_and_flags_them_for_rehash() -> None:
    old = FAST.hash("tidal-basin-4711")
    stronger = PasswordHasher(ScryptParams(n=64, r=8, p=1))
    assert stronger.verify("tidal-basin-4711", old)
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(stronger.hash("tidal-basin-4711"))


def test_a_tampered_hash_verifies_nothing() -> None:
    encoded = FAST.hash("tidal-basin-4711")
    parts = encoded.split("$")
    key = bytearray(base64.b64decode(parts[5]))
    key[-1] ^= 1  # the last bit of the key: the whole key must be compared
    parts[5] = base64.b64encode(bytes(key)).decode()
    assert not FAST.verify("tidal-basin-4711", "$".join(parts))


@pytest.mark.parametrize("encoded", [
    "", "scrypt", "plain-text-password", "scrypt$16$8$1$$", "bcrypt$16$8$1$AAAAAAAAAAA=$AAAA",
    "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # n not a power of 2
    "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # 1 TiB of RAM
    "scrypt$16$8$1$not*base64$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
])
def test_malformed_or_absurd_stored_hashes_refuse_the_login_without_crashing(encoded: str) -> None:
    assert FAST.verify("anything-at-all", encoded) is False
    assert FAST.needs_rehash(encoded)


@given(st.text(max_size=80))
@settings(max_examples=100, deadline=None)
def test_any_garbage_in_the_hash_field_is_a_refusal_not_an_exception(encoded: str) -> None:
    assert FAST.verify("anything-at-all", encoded) is False


def test_the_same_password_typed_in_another_unicode_form_still_verifies() -> None:
    composed = "Grüße-vom-Speicher"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert FAST.verify(decomposed, FAST.hash(composed))


def test_a_lone_surrogate_from_json_does_not_crash_hashing() -> None:
    assert FAST.verify("abc\ud800defghijk", FAST.hash("abc\ud800defghijk"))


@pytest.mark.parametrize("password, username, expected", [
    ("short-pw", "anna", f"at least {MIN_LENGTH} characters"),
    ("Operator.42", "operator.42", "must not be the username"),
    ("1234567890", "anna", "most common passwords"),
    ("Password123", "anna", "most common passwords"),
    ("Welcome2024!", "anna", "common word"),
    ("phoenyra-2024", "anna", "common word"),
    ("aaaaaaaaaaaa", "anna", "different characters"),
    ("abababababab", "anna", "different characters"),
    ("x" * 300, "anna", "at most"),
    ("tab\there-is-bad", "anna", "control characters"),
])
def test_weak_passwords_are_refused_with_a_message_that_says_why(password: str, username: str,
                                                                  expected: str) -> None:
    problems = check_policy(password, username)
    assert problems and any(expected in p for p in problems), problems


@pytest.mark.parametrize("password", ["tidal-basin-4711", "Kühlschrank am Speicher", "correct horse battery"])
def test_reasonable_passwords_pass_the_policy(password: str) -> None:
    assert check_policy(password, "anna") == []


def test_generated_passwords_pass_the_policy_and_differ() -> None:
    generated = {generate_password() for _ in range(50)}
    assert len(generated) == 50
    assert all(check_policy(p, "admin") == [] for p in generated)
