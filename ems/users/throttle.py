"""Login throttling per client address and per username, so guessing passwords is slow and noisy.

Two independent counters of failed logins in a sliding window:

- per client address (IPv6 counted per /64, since one host easily owns a whole /64): a low threshold and a
  long, doubling lock-out. This is what stops an attacker at one address.
- per username, from all addresses together: a higher threshold and short pauses (a few seconds at most).
  It only slows down an attack spread over many addresses, so the real user, from their own address, is
  at worst asked to wait a moment — an attacker at one address can never lock them out.

While a key is locked, attempts are refused (the caller answers 429 with Retry-After) *without* checking
the password, so refused attempts reveal nothing and cost no scrypt time. Time is passed in; the state is
bounded (least recently failed keys are forgotten first).
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


ADDRESS_POLICY = ThrottlePolicy(max_failures=10, window_s=3600.0, base_lock_s=30.0, max_lock_s=900.0)
USER_POLICY = ThrottlePolicy(max_failures=30, window_s=3600.0, base_lock_s=1.0, max_lock_s=30.0)


@dataclass(frozen=True)
class ThrottleDecision:
    allowed: bool
    retry_after_s: int = 0
    scope: str | None = None  # "address" or "user" when refused

    @property
    def message(self) -> str:
        if self.allowed:
            return ""
        who = "from this address" if self.scope == "address" else "for this user"
        return f"too many failed logins {who}; try again in {self.retry_after_s} s"


@dataclass
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


def address_key(address: str | None) -> str:
    """The throttling key of a client address: IPv4 as is, IPv6 by /64, IPv4-mapped IPv6 as IPv4."""
    raw = (address or "").strip()
    try:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])
    except ValueError:
        return "addr:" + raw[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


def user_key(username: str | None) -> str:
    return "user:" + (username or "").strip().lower()[:64]


class LoginThrottle:
    """Thread-safe failure counters keyed by address and by username."""

    def __init__(self, address_policy: ThrottlePolicy = ADDRESS_POLICY, user_policy: ThrottlePolicy = USER_POLICY,
                 max_keys: int = 10_000):
        self.address_policy = address_policy
        self.user_policy = user_policy
        self.max_keys = max_keys
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, username: str | None, address: str | None, now: float) -> ThrottleDecision:
        """May a login for `username` from `address` be checked now? Refusals carry the seconds to wait."""
        with self._lock:
            for key, scope in ((address_key(address), "address"), (user_key(username), "user")):
                counter = self._counters.get(key)
                if counter is not None and counter.locked_until > now:
                    return ThrottleDecision(False, max(1, math.ceil(counter.locked_until - now)), scope)
        return ThrottleDecision(True)

    def record_failure(self, username: str | None, address: str | None, now: float) -> None:
        with self._lock:
            self._fail(address_key(address), self.address_policy, now)
            self._fail(user_key(username), self.user_policy, now)

    def record_success(self, username: str | None, address: str | None, now: float) -> None:
        """A successful login clears the user's counter. The address counter stays: otherwise an attacker
        holding any valid account could reset it between guesses at another one."""
        with self._lock:
            self._counters.pop(user_key(username), None)

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
        while len(self._counters) > self.max_keys:
            self._counters.popitem(last=False)
