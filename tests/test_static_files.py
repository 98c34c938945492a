"""Static files as a phone on the gateway's Wi-Fi needs them: compressed, versioned, cached for a year."""
from __future__ import annotations

import gzip
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import brotli  # the test extras: the copies are checked, not trusted
import pytest

from ems.api.static_files import StaticFiles, accepts, accepts_gzip, brotli_copy_name

WEB_STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={k.replace("_", "-"): v for k, v in headers.items()})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_pages_name_versioned_files_served_compressed_and_kept_a_year(ems_factory):
    ems = ems_factory()
    status, _, login = fetch(ems.base_url + "/login")
    assert status == 200
    css = re.search(r'href="(/static/css/app\.css\?v=[0-9a-f]{12})"', login.decode())
    assert css, "the page names its stylesheet with the content's version"

    status, headers, body = fetch(ems.base_url + css.group(1), Accept_Encoding="gzip, deflate")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["content-type"].startswith("text/css") and "Accept-Encoding" in headers["vary"]
    assert gzip.decompress(body) == (WEB_STATIC / "css" / "app.css").read_bytes()
    assert len(body) < 0.4 * len(gzip.decompress(body))

    # Chart.js, the largest file: what a cold dashboard pays for it.
    _, chart_headers, chart = fetch(ems.base_url + "/static/vendor/chartjs/chart.umd.min.js", Accept_Encoding="gzip")
    raw = (WEB_STATIC / "vendor" / "chartjs" / "chart.umd.min.js").read_bytes()
    assert gzip.decompress(chart) == raw and len(chart) < len(raw) / 2.5
    assert chart_headers["cache-control"] == "no-cache", "without its version a file is revalidated, never stale"

    # Revalidation: the ETag answers 304 without a body; a client without gzip gets the plain file, and the
    # gzip copy's tag does not stand for it (a strong tag names one representation).
    status, _, empty = fetch(ems.base_url + css.group(1), Accept_Encoding="gzip, deflate", If_None_Match=headers["etag"])
    assert status == 304 and empty == b""
    status, _, full = fetch(ems.base_url + css.group(1), Accept_Encoding="identity", If_None_Match=headers["etag"])
    assert status == 200 and full == gzip.decompress(body)
    status, plain_headers, plain = fetch(ems.base_url + css.group(1), Accept_Encoding="identity")
    assert status == 200 and "content-encoding" not in plain_headers and plain == gzip.decompress(body)

    for bad in ("/static/../ems/__init__.py", "/static/%2e%2e/%2e%2e/setup.cfg", "/static/js/nope.js",
                "/static/js/%00.js"):
        assert fetch(ems.base_url + bad)[0] == 404, bad


def test_browsers_that_accept_brotli_get_chart_js_smaller_still(ems_factory):
    ems = ems_factory()
    raw = (WEB_STATIC / "vendor" / "chartjs" / "chart.umd.min.js").read_bytes()
    status, headers, body = fetch(ems.base_url + "/static/vendor/chartjs/chart.umd.min.js",
                                  Accept_Encoding="gzip, deflate, br")
    assert status == 200 and headers["content-encoding"] == "br" and brotli.decompress(body) == raw
    _, _, gzipped = fetch(ems.base_url + "/static/vendor/chartjs/chart.umd.min.js", Accept_Encoding="gzip")
    assert len(body) < 0.9 * len(gzipped), "the point of the copy: a tenth off the largest file"
    status, headers, _ = fetch(ems.base_url + "/static/js/util.js", Accept_Encoding="br")
    assert status == 200 and "content-encoding" not in headers, "no copy, no gzip asked for: the plain file"
    copy = brotli_copy_name(WEB_STATIC / "vendor" / "chartjs" / "chart.umd.min.js").name
    assert fetch(ems.base_url + "/static/vendor/chartjs/" + copy)[0] == 404, "a copy is not a file of its own"


def test_every_shipped_brotli_copy_is_of_its_file_as_it_is_now():
    """A copy made from an older file would never be served (its name carries the old hash): `make brotli`."""
    copies = sorted(WEB_STATIC.rglob("*.br"))
    assert [p.name for p in copies] == [brotli_copy_name(WEB_STATIC / "vendor" / "chartjs" / "chart.umd.min.js").name]
    for copy in copies:
        source = copy.with_name(copy.name.rsplit(".", 2)[0])
        assert copy == brotli_copy_name(source), f"{copy.name} is stale: make brotli"
        assert brotli.decompress(copy.read_bytes()) == source.read_bytes()


def test_files_are_outside_the_folder_refused_and_tiny_ones_not_compressed(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "tiny.css").write_text("a{}")
    (tmp_path / "secret.txt").write_text("no")
    files = StaticFiles(tmp_path / "static")
    tiny = files.get("tiny.css")
    assert tiny is not None and tiny.gzipped is None, "a few bytes compressed cost more than they save"
    assert files.get("../secret.txt") is None
    assert files.url("missing.js") == "/static/missing.js"


def test_other_spellings_of_a_files_name_share_its_one_kept_copy(tmp_path):
    """An unsigned client may send any number of spellings; what is kept is bounded by what ships."""
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("let a = 1;\n" * 100)
    files = StaticFiles(tmp_path)
    first = files.get("js/a.js")
    for spelling in ("js/./a.js", "js//a.js", "./js/a.js", "js/../js/a.js", "js/././/a.js"):
        assert files.get(spelling) is first, spelling
    assert len(files._files) == 1


@pytest.mark.parametrize("header, gzip_ok", [
    ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True), ("gzip;q=0", False), ("*", True),
    ("identity", False), (None, False), ("", False),
])
def test_gzip_only_when_the_client_accepts_it(header, gzip_ok):
    assert accepts_gzip(header) is gzip_ok


@pytest.mark.parametrize("header, br_ok", [
    ("gzip, deflate, br", True), ("*", True), ("*, br;q=0", False), ("br;q=0, *", False), ("gzip, br;Q=0", False),
    ("gzip, BR", True), ("br; q=0.5", True), ("gzip", False), ("*;q=0", False),
])
def test_a_coding_named_outright_counts_before_the_star(header, br_ok):
    assert accepts(header, "br") is br_ok


def test_pages_and_json_answers_are_compressed_for_clients_that_accept_it(ems_factory):
    ems = ems_factory()
    session = ems.login()
    cookie = session.cookie or ""
    for path, kind in (("/api/state", "application/json"), ("/", "text/html")):
        status, headers, body = fetch(ems.base_url + path, Cookie=cookie, Accept_Encoding="gzip")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert headers["content-encoding"] == "gzip" and "Accept-Encoding" in headers.get("vary", "")
        text = gzip.decompress(body)
        assert len(body) < len(text) / 2
        _, plain_headers, plain = fetch(ems.base_url + path, Cookie=cookie)
        assert "content-encoding" not in plain_headers, "no gzip for a client that did not ask for it"
        if kind == "application/json":
            assert json.loads(text).keys() == json.loads(plain).keys()
