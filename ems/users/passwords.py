"""Password hashing (scrypt), the minimum password policy, and random passwords for first start and resets.

Stored form: `scrypt$<n>$<r>$<p>$<salt base64>$<key base64>`. The cost parameters travel with each hash, so
they can be raised later: old hashes still verify with their own parameters, and `needs_rehash` tells the
store to re-hash with the current ones at the next successful login.

Memory: one scrypt evaluation needs 128·n·r bytes (16 MiB at the default n=2^14, r=8). Concurrent logins in
cheroot's worker threads would multiply that, so a hasher lets only `max_concurrent` evaluations run at once —
and runs them on its own `max_concurrent` threads. Where they run matters as much as how many: glibc keeps a
freed 16 MiB block in the allocating thread's arena (its mmap threshold rises after the first free), so
scrypt run in each of the web server's threads in turn would leave 16 MiB behind in every one of them — a
login flood grew the process by 200 MB. On a fixed pair of threads it is 32 MiB at most, reused.
"""
from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import logging
import re
import secrets
import threading
import unicodedata
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_LENGTH = 10
MAX_LENGTH = 256
MIN_DISTINCT_CHARS = 5

# Bounds on parameters read back from a stored hash: a hand-edited file must not make a login allocate GBs.
_MAX_N = 2**20
_MAX_MEM_BYTES = 256 * 2**20

# Common passwords that the length rule alone would let through (compared case-insensitively).
COMMON_PASSWORDS = frozenset({
    "1234567890", "0123456789", "9876543210", "12345678910", "123456789a", "a123456789", "1q2w3e4r5t",
    "1qaz2wsx3edc", "qwertyuiop", "asdfghjkl;", "zxcvbnm123", "qwertzuiop", "abcdefghij", "abcd123456",
    "1234qwer", "qwerty123456", "qwertyuiop123", "1111111111", "0000000000", "password123", "password1234",
    "passwort123", "passwort1234", "administrator", "iloveyou123", "letmein123", "welcome123", "changeme123",
    "trustno1234", "football123", "baseball123", "superman123", "princess123", "sunshine123", "starwars123",
    "phoenyraems", "phoenyra123", "phoenyra-ems", "raspberrypi", "raspberry123",
})
# Words that stay guessable with digits or symbols appended ("Welcome2024!").
COMMON_WORDS = frozenset({
    "password", "passwort", "admin", "administrator", "qwerty", "qwertz", "letmein", "welcome", "willkommen",
    "iloveyou", "changeme", "default", "secret", "geheim", "sunshine", "monkey", "dragon", "football",
    "baseball", "master", "shadow", "superman", "trustno1", "princess", "starwars", "phoenyra", "operator",
    "viewer", "battery", "raspberry", "summer", "winter", "spring", "autumn", "sommer", "herbst", "fruehling",
})
_TRAILING_DIGITS_SYMBOLS = re.compile(r"[\d\W_]+$")

# A password a person can read off a console and type: no 0/O, 1/l/I look-alikes.
_GENERATED_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def normalize(password: str) -> str:
    """NFKC, so the same password typed on different keyboards/OSes hashes the same (NIST SP 800-63B)."""
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, username: str = "") -> list[str]:
    """Every reason `password` is not acceptable, as messages a user can act on; [] when it is fine."""
    if not isinstance(password, str):
        return ["must be a text string"]
    pw = normalize(password)
    problems = []
    if len(pw) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters long (got {len(pw)})")
    if len(pw) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long (got {len(pw)})")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in pw):
        problems.append("must not contain control characters or invalid Unicode")
    lower = pw.lower()
    if username and lower.strip() == username.strip().lower():
        problems.append("must not be the username")
    elif lower in COMMON_PASSWORDS:
        problems.append("is one of the most common passwords; choose another")
    elif _TRAILING_DIGITS_SYMBOLS.sub("", lower) in COMMON_WORDS:
        problems.append("is a common word with digits or symbols added; choose something less guessable")
    elif len(pw) >= MIN_LENGTH and len(set(pw)) < MIN_DISTINCT_CHARS:
        problems.append(f"must use at least {MIN_DISTINCT_CHARS} different characters")
    return problems


def generate_password(groups: int = 4, group_len: int = 4) -> str:
    """A random password like `k7pm-3xqa-9h2w-zt4e` (80 bits at the defaults) that passes the policy."""
    while True:
        candidate = "-".join("".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(group_len))
                             for _ in range(groups))
        if not check_policy(candidate):
            return candidate


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: n (CPU/memory, a power of two), r (block size), p (parallelism)."""

    n: int = 2**14
    r: int = 8
    p: int = 1
    salt_bytes: int = 16
    key_bytes: int = 32

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.n > _MAX_N:
            raise ValueError(f"scrypt n must be a power of two between 2 and {_MAX_N} (got {self.n})")
        if not (1 <= self.r <= 64 and 1 <= self.p <= 16) or 128 * self.n * self.r > _MAX_MEM_BYTES:
            raise ValueError(f"scrypt r={self.r}, p={self.p} out of range or too much memory")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    secret = normalize(password).encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=128 * r * (n + p + 2) + 2**20)


class PasswordHasher:
    """Hashes and verifies passwords with scrypt at `params`, at most `max_concurrent` at a time."""

    def __init__(self, params: ScryptParams = ScryptParams(), max_concurrent: int = 2):
        self.params = params
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_concurrent),
                                                           thread_name_prefix="scrypt")
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    def _run(self, password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
        """scrypt on the hasher's own threads (see the module doc); the caller waits for it."""
        return self._pool.submit(_scrypt, password, salt, n, r, p, dklen).result()

    def hash(self, password: str) -> str:
        prm = self.params
        salt = secrets.token_bytes(prm.salt_bytes)
        key = self._run(password, salt, prm.n, prm.r, prm.p, prm.key_bytes)
        return f"scrypt${prm.n}${prm.r}${prm.p}${_b64(salt)}${_b64(key)}"

    def verify(self, password: str, encoded: str) -> bool:
        """True only if `password` matches; a malformed stored hash verifies nothing (and is logged)."""
        parsed = _parse(encoded)
        if parsed is None or not isinstance(password, str):
            if parsed is None:
                log.warning("stored password hash is malformed; login refused")
            return False
        n, r, p, salt, key = parsed
        candidate = self._run(password, salt, n, r, p, len(key))
        return hmac.compare_digest(candidate, key)

    def needs_rehash(self, encoded: str) -> bool:
        """True when `encoded` was made with other (usually weaker) parameters than the current ones."""
        parsed = _parse(encoded)
        if parsed is None:
            return True
        n, r, p, salt, key = parsed
        prm = self.params
        return (n, r, p, len(salt), len(key)) != (prm.n, prm.r, prm.p, prm.salt_bytes, prm.key_bytes)

    def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification, so an unknown username answers as slowly as a known one."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self.hash(generate_password())
        self.verify(password, self._dummy)


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(encoded, str):
        return None
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
        ScryptParams(n=n, r=r, p=p)  # bounds check
    except (ValueError, binascii.Error):
        return None
    if len(salt) < 8 or not (16 <= len(key) <= 64):
        return None
    return n, r, p, salt, key
