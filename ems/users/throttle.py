"""Login throttling, so guessing passwords is slow and noisy — and so nobody can lock a real user out.

Three counters of failed logins in a sliding window, each with its own lock-out:

- per (exact client address, username) — `pair_policy`: a low threshold and a long, doubling lock-out. It
  stops a guesser at one address against one account, and applies to everyone, trusted or not.
- per client *network* (IPv4 address; IPv6 by /64, since one host easily owns a whole /64) — `address_policy`:
  the same low threshold across all usernames, against spraying one password over many accounts, and
  against rotating addresses inside one /64.
- per username from all addresses together — `user_policy`: a higher threshold and short pauses (30 s at
  most), against an attack spread over many networks.

A (address, username) pair that logged in successfully within `trust_s` is *trusted*: the network and user
counters never refuse it. So an attacker — at another address of the same LAN, or spread over the internet —
can at worst slow the real admin down at an address the admin never used before, never lock them out at the
one they use; and an attacker at the admin's own address is still stopped by the pair counter. A success
clears that pair's and that user's counters, never the network's: an attacker holding one valid account
cannot wipe their failures between guesses at another.

Checks are reservations (`acquire`): an attempt being checked counts against every counter until its
outcome is recorded (`record_failure`, `record_success` or `release`), so a concurrent burst gets exactly as
many password checks as a sequential one — never more than the threshold.

While a key is locked, attempts are refused (the caller answers 429 with Retry-After) *without* checking
the password, so refused attempts reveal nothing and cost no scrypt time. Time is passed in; the state is
bounded (least recently failed keys are forgotten first).

`RegistrationLimiter` limits self-registrations per client network and overall, the same way.
"""
from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThrottlePolicy:
    """After `max_failures` failures within `window_s`, lock for base_lock_s·2^(failures − max_failures), capped."""

    max_failures: int
    window_s: float
    base_lock_s: float
    max_lock_s: float


PAIR_POLICY = ThrottlePolicy(max_failures=10, window_s=3600.0, base_lock_s=30.0, max_lock_s=900.0)
ADDRESS_POLICY = ThrottlePolicy(max_failures=10, window_s=3600.0, base_lock_s=30.0, max_lock_s=900.0)
USER_POLICY = ThrottlePolicy(max_failures=30, window_s=3600.0, base_lock_s=1.0, max_lock_s=30.0)
TRUST_S = 30 * 86400.0


@dataclass(frozen=True)
class ThrottleDecision:
    allowed: bool
    retry_after_s: int = 0
    scope: str | None = None  # "pair", "address" or "user" when refused
    keys: tuple[str, ...] = ()  # the counters an allowed attempt holds a reservation on

    @property
    def message(self) -> str:
        if self.allowed:
            return ""
        who = {"pair": "for this user from this address", "address": "from this address",
               "user": "for this user"}.get(self.scope or "", "")
        return f"too many failed logins {who}; try again in {self.retry_after_s} s"


@dataclass
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    in_flight: int = 0


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address((address or "").strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_key(address: str | None) -> str:
    """The network key of a client address: IPv4 as is, IPv6 by /64, IPv4-mapped IPv6 as IPv4."""
    ip = _ip(address)
    if ip is None:
        return "addr:" + (address or "").strip()[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


def exact_address(address: str | None) -> str:
    ip = _ip(address)
    return str(ip) if ip is not None else (address or "").strip()[:64]


def user_key(username: str | None) -> str:
    return "user:" + (username or "").strip().lower()[:64]


def pair_key(username: str | None, address: str | None) -> str:
    return f"pair:{exact_address(address)}|{user_key(username)[5:]}"


class LoginThrottle:
    """Thread-safe failure counters keyed by (address, user), network and username."""

    def __init__(self, address_policy: ThrottlePolicy = ADDRESS_POLICY, user_policy: ThrottlePolicy = USER_POLICY,
                 max_keys: int = 10_000, pair_policy: ThrottlePolicy = PAIR_POLICY, trust_s: float = TRUST_S):
        self.address_policy = address_policy
        self.user_policy = user_policy
        self.pair_policy = pair_policy
        self.trust_s = trust_s
        self.max_keys = max_keys
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._trusted: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _applicable(self, username: str | None, address: str | None, now: float
                    ) -> list[tuple[str, str, ThrottlePolicy]]:
        keys = [(pair_key(username, address), "pair", self.pair_policy)]
        trusted_since = self._trusted.get(pair_key(username, address))
        if trusted_since is None or now - trusted_since > self.trust_s:
            keys += [(address_key(address), "address", self.address_policy),
                     (user_key(username), "user", self.user_policy)]
        return keys

    def check(self, username: str | None, address: str | None, now: float) -> ThrottleDecision:
        """May a login for `username` from `address` be checked now? (No reservation; see `acquire`.)"""
        with self._lock:
            return self._decide(username, address, now)

    def acquire(self, username: str | None, address: str | None, now: float) -> ThrottleDecision:
        """`check`, and if allowed, reserve the attempt on its counters until its outcome is recorded."""
        with self._lock:
            decision = self._decide(username, address, now)
            if decision.allowed:
                for key in decision.keys:
                    self._counter(key).in_flight += 1
            return decision

    def _decide(self, username: str | None, address: str | None, now: float) -> ThrottleDecision:
        keys = []
        for key, scope, policy in self._applicable(username, address, now):
            keys.append(key)
            counter = self._counters.get(key)
            if counter is None:
                continue
            if counter.locked_until > now:
                return ThrottleDecision(False, max(1, math.ceil(counter.locked_until - now)), scope)
            failures = sum(1 for t in counter.failures if t > now - policy.window_s)
            # Under the threshold: as many checks at once as failures are left. Past it (a lock-out just ended):
            # one check at a time, whose failure locks again for longer.
            budget = policy.max_failures - failures if failures < policy.max_failures else 1
            if counter.in_flight >= budget:
                return ThrottleDecision(False, 1, scope)
        return ThrottleDecision(True, keys=tuple(keys))

    def record_failure(self, username: str | None, address: str | None, now: float,
                       attempt: ThrottleDecision | None = None) -> None:
        with self._lock:
            self._release(attempt)
            self._fail(pair_key(username, address), self.pair_policy, now)
            self._fail(address_key(address), self.address_policy, now)
            self._fail(user_key(username), self.user_policy, now)

    def record_success(self, username: str | None, address: str | None, now: float,
                       attempt: ThrottleDecision | None = None) -> None:
        """A successful login clears the pair's and the user's counters and trusts the pair; the network counter
        stays: otherwise an attacker holding any valid account could reset it between guesses at another one."""
        with self._lock:
            self._release(attempt)
            self._counters.pop(user_key(username), None)
            self._counters.pop(pair_key(username, address), None)
            key = pair_key(username, address)
            self._trusted.pop(key, None)
            self._trusted[key] = now
            while len(self._trusted) > self.max_keys:
                self._trusted.popitem(last=False)

    def release(self, attempt: ThrottleDecision | None) -> None:
        """An attempt that ended without a verdict on the password (disabled account, refused input)."""
        with self._lock:
            self._release(attempt)

    def _release(self, attempt: ThrottleDecision | None) -> None:
        for key in attempt.keys if attempt is not None else ():
            counter = self._counters.get(key)
            if counter is not None and counter.in_flight > 0:
                counter.in_flight -= 1

    def _counter(self, key: str) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter()
            self._bound()
        return counter

    def _fail(self, key: str, policy: ThrottlePolicy, now: float) -> None:
        counter = self._counters.pop(key, None) or _Counter()
        self._counters[key] = counter  # most recently failed last
        failures = counter.failures
        while failures and failures[0] <= now - policy.window_s:
            failures.popleft()
        failures.append(now)
        while len(failures) > policy.max_failures + 32:  # enough to reach max_lock_s; bounded memory
            failures.popleft()
        excess = len(failures) - policy.max_failures
        if excess >= 0:
            lock_s = min(policy.max_lock_s, policy.base_lock_s * 2.0 ** min(excess, 32))
            counter.locked_until = max(counter.locked_until, now + lock_s)
        self._bound()

    def _bound(self) -> None:
        while len(self._counters) > self.max_keys:
            self._counters.popitem(last=False)


@dataclass(frozen=True)
class RatePolicy:
    """At most `max_events` within any `window_s`."""

    max_events: int
    window_s: float


REGISTRATIONS_PER_ADDRESS = RatePolicy(max_events=5, window_s=3600.0)
REGISTRATIONS_OVERALL = RatePolicy(max_events=30, window_s=3600.0)


class RegistrationLimiter:
    """Self-registration attempts per client network and overall; every attempt counts (a refused username
    too), so a flood of sign-ups is cut off after the limit whatever it sends. Thread-safe, bounded."""

    def __init__(self, per_address: RatePolicy = REGISTRATIONS_PER_ADDRESS,
                 overall: RatePolicy = REGISTRATIONS_OVERALL, max_keys: int = 10_000):
        self.per_address = per_address
        self.overall = overall
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, address: str | None, now: float) -> ThrottleDecision:
        """Count one registration attempt from `address`, or refuse it (429) when a limit is reached."""
        with self._lock:
            checks = ((address_key(address), self.per_address, "address"), ("*", self.overall, "overall"))
            for key, policy, scope in checks:
                events = self._events.get(key)
                if events is None:
                    continue
                while events and events[0] <= now - policy.window_s:
                    events.popleft()
                if len(events) >= policy.max_events:
                    wait = events[0] + policy.window_s - now
                    return ThrottleDecision(False, max(1, math.ceil(wait)), scope)
            for key, _policy, _scope in checks:
                events = self._events.pop(key, None) or deque()
                events.append(now)
                self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return ThrottleDecision(True)
