"""The live stream's deltas: applying one always rebuilds the new state, and on the wire they are what the
page needs to stay current (the whole state first, then changes), while old clients keep whole states."""
from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from appliance import demo_config
from ems.api.deltas import apply, delta

JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b"]),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("wxyz"), inner,
                                                                                  max_size=4), max_leaves=12)
STATES = st.dictionaries(st.sampled_from("abcdef"), JSON, max_size=5)


def removed_as_null(old: Any, new: Any) -> Any:
    """`new` as the page holds it: keys the state lost read as null."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = {k: removed_as_null(old.get(k), v) for k, v in new.items()}
    out.update({k: None for k in old.keys() - new.keys()})
    return out


@given(STATES, STATES)
def test_applying_the_delta_rebuilds_the_new_state(old, new):
    assert apply(old, delta(old, new)) == removed_as_null(old, new)


@given(STATES)
def test_an_unchanged_state_is_an_empty_delta_and_the_old_state_is_left_alone(state):
    before = json.dumps(state, sort_keys=True)
    assert delta(state, state) == {}
    apply(state, {"a": {"w": 1}})
    assert json.dumps(state, sort_keys=True) == before


def events(base: str, cookie: str, query: str, count: int) -> list[tuple[str, int, dict[str, Any]]]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    conn.request("GET", "/api/events" + query, headers={"Cookie": cookie})
    resp = conn.getresponse()
    out, name = [], None
    try:
        while len(out) < count:
            line = resp.fp.readline().decode()
            assert line, "stream ended"
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                raw = line.split(":", 1)[1].strip()
                out.append((str(name), len(raw), json.loads(raw)))
    finally:
        conn.close()
    return out


def test_the_page_stream_sends_the_state_once_then_changes_that_rebuild_it(ems_factory):
    ems = ems_factory(demo_config(web={"sse_interval_s": 0.5}))
    cookie = ems.login().cookie or ""
    got = events(ems.base_url, cookie, "?deltas=1", 6)
    assert [name for name, _size, _data in got] == ["state"] + ["delta"] * 5
    state = got[0][2]
    for _name, _size, patch in got[1:]:
        state = apply(state, patch)
    assert state.keys() == got[0][2].keys() and state["plant"]["battery"]["soc_pct"] is not None
    assert max(size for _n, size, _d in got[1:]) < got[0][1], "a delta is smaller than the whole state"
    assert [name for name, _s, _d in events(ems.base_url, cookie, "", 2)] == ["state", "state"], \
        "without ?deltas=1 every event is the whole state, as before"


def test_a_dso_trip_is_sent_at_once_not_at_the_next_tick(ems_factory):
    """With a minute between ticks, the trip still reaches the page within seconds: the stream does not wait
    for its tick when the power-control state changes (what the dashboard's override banner shows)."""
    ems = ems_factory(demo_config(web={"sse_interval_s": 60.0}))
    session = ems.login()
    url = urlsplit(ems.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=40)  # below the 60 s tick
    conn.request("GET", "/api/events?deltas=1", headers={"Cookie": session.cookie or ""})
    resp = conn.getresponse()

    def next_state(before: dict[str, Any] | None) -> dict[str, Any]:
        name = None
        while True:
            line = resp.fp.readline().decode()
            assert line, "stream ended"
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                return apply(before, data) if name == "delta" and before is not None else data

    try:
        state = next_state(None)
        assert session.request("POST", "/api/simulator/events", {"type": "dso_trip"})[0] == 200
        while state["power_control"]["state"] != "shutdown":  # other changes may be pushed on the way
            state = next_state(state)  # the socket's 40 s timeout ends this before the 60 s tick could
    finally:
        conn.close()
