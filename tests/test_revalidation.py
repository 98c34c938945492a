"""A reload asks again and gets "unchanged" for what has not changed (pages, plant data); accounts, tokens and
the audit log are never kept by the browser; a kept page is never shown without a fresh permission
check (ems/api/revalidation.py)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from security_rig import Rig


def get(rig: Rig, path: str, role: str | None = None, **headers: str) -> tuple[int, dict[str, str], object]:
    """(status, headers by lower-case name, body) of a GET; keyword headers with _ for - (If_None_Match)."""
    status, answer, body = rig.call("GET", path, as_role=role, headers={k.replace("_", "-"): v for k, v in headers.items()})
    return status, {k.lower(): v for k, v in answer.items()}, body


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    r.add_users()
    yield r
    r.close()


@pytest.mark.parametrize("path", ["/", "/help", "/settings", "/api/strategies", "/api/settings/form",
                                  "/api/modbus/profiles"])
def test_a_reload_of_an_unchanged_page_or_answer_gets_304_without_a_body(rig: Rig, path: str):
    status, headers, body = get(rig, path, "viewer", Accept_Encoding="gzip")
    assert status == 200 and body
    tag = headers["etag"]
    assert tag.startswith('W/"') and headers["cache-control"] == "private, no-cache"
    status, headers, body = get(rig, path, "viewer", If_None_Match=tag)
    assert (status, body) == (304, None)
    assert headers["etag"] == tag and "content-encoding" not in headers
    # Any tag in the list, strong or weak, is the same content; another tag gets the whole answer.
    assert get(rig, path, "viewer", If_None_Match=f'"x", {tag[2:]}')[0] == 304
    assert get(rig, path, "viewer", If_None_Match='W/"0000"')[0] == 200


def test_a_change_gives_a_new_tag_and_the_whole_answer(rig: Rig):
    _, headers, before = get(rig, "/api/strategies", "operator")
    assert isinstance(before, dict) and before["mode"] == "auto"
    assert rig.call("POST", "/api/strategy", {"strategy": "peak_shaving"}, as_role="operator")[0] == 200
    status, after_headers, after = get(rig, "/api/strategies", "operator", If_None_Match=headers["etag"])
    assert status == 200 and isinstance(after, dict) and (after["mode"], after["current"]) == ("manual", "peak_shaving")
    assert after_headers["etag"] != headers["etag"]


def test_the_page_is_tagged_per_reader_not_shared_between_roles(rig: Rig):
    _, viewer, _ = get(rig, "/", "viewer")
    status, admin, _ = get(rig, "/", "admin", If_None_Match=viewer["etag"])
    assert status == 200 and admin["etag"] != viewer["etag"], "the admin's page shows more (menu, CSRF token)"


@pytest.mark.parametrize("path, role", [("/api/users", "admin"), ("/api/audit?limit=5", "admin"),
                                        ("/api/me", "viewer"), ("/api/me/tokens", "viewer"), ("/users", "admin"),
                                        ("/setup", "admin"), ("/login", None)])
def test_accounts_tokens_the_audit_log_and_their_pages_are_not_kept_by_the_browser(rig: Rig, path: str, role: str):
    status, headers, _ = get(rig, path, role)
    assert status == 200 and headers["cache-control"] == "no-store" and "etag" not in headers


def test_a_kept_page_is_not_confirmed_to_a_reader_who_has_logged_out(rig: Rig):
    _, headers, _ = get(rig, "/", "viewer")
    status, answer, _ = get(rig, "/", If_None_Match=headers["etag"])
    assert status in (302, 303) and urlsplit(answer["location"]).path == "/login"
    status, _, body = get(rig, "/api/strategies", If_None_Match="*")
    assert status == 401 and isinstance(body, dict) and body["error"]
