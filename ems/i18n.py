"""Translations of every visible string, German and English, for the pages and their scripts alike.

gettext's convention: the English text is the key (`_("Log out")` in a template, `t('Log out')` in a page
script), so a page reads naturally in English and a missing translation shows English rather than a key.
The German catalog is `web/i18n/de/*.json` (msgid → text, merged; a msgid in two files must agree); English
needs none. Placeholders are `{name}`, filled from keyword arguments after translating, so a translation may
move them: `_("{n} alarms", n=3)`.

The language: the `ems_lang` cookie the user menu's switch sets (remembered for a year), else the best of
`Accept-Language`, else English. Scripts get the catalog's entries they use as `/i18n/<lang>.js`
(`window.EMS_I18N`), with a content hash in its URL so a browser keeps it until a release changes it.
`tests/test_i18n.py` fails on a msgid without a German text and on visible template text outside `_()`.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .resources import web_dir

log = logging.getLogger(__name__)

LANGUAGES: dict[str, str] = {"en": "English", "de": "Deutsch"}  # code → the language's own name
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "ems_lang"
# BCP 47 tags for number and date formats (Intl in the browser): Austria, the product's home market.
LOCALE_TAGS = {"en": "en-GB", "de": "de-AT"}

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_QUALITY = re.compile(r"^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$")

Translate = Callable[..., str]


class CatalogError(ValueError):
    """A catalog file is not a flat JSON object of strings, or two files disagree on a msgid."""


def catalog_dir() -> Path:
    return web_dir() / "i18n"


def _load(lang: str, root: Path) -> dict[str, str]:
    messages: dict[str, str] = {}
    folder = root / lang
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogError(f"{path}: not a JSON object")
        for msgid, text in data.items():
            if not isinstance(text, str) or not text:
                raise CatalogError(f"{path}: {msgid!r} has no text")
            if msgid in messages and messages[msgid] != text:
                raise CatalogError(f"{path}: {msgid!r} differs from its text in another file")
            messages[msgid] = text
    return messages


@functools.lru_cache(maxsize=None)
def catalog(lang: str) -> Mapping[str, str]:
    """The language's messages (empty for English): loaded once per process, as the files ship read-only."""
    if lang not in LANGUAGES or lang == DEFAULT_LANGUAGE:
        return {}
    return _load(lang, catalog_dir())


def mark(msgid: str) -> str:
    """A msgid translated later, where the reader's language is not yet known (a module-level table):
    the marker lets the catalog test find it."""
    return msgid


def fill(text: str, params: Mapping[str, Any]) -> str:
    """Replace `{name}` by its parameter; an unknown placeholder stays as written rather than failing a page."""
    if not params:
        return text
    return _PLACEHOLDER.sub(lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0), text)


def translator(lang: str) -> Translate:
    """`_` for one language: `_(msgid, **params)`."""
    messages = catalog(lang)

    def translate(msgid: str, **params: Any) -> str:
        return fill(messages.get(msgid, msgid), params)

    return translate


def _accept_language(header: str) -> list[tuple[float, int, str]]:
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, rest = part.partition(";")
        q = 1.0
        if rest:
            match = _QUALITY.match(rest)
            if match is None:
                continue
            q = float(match.group(1))
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, position, primary))
    return sorted(ranked)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The page's language: the remembered choice, else the browser's preference we speak, else English.
    Anything malformed counts as absent (a header is the client's to get wrong, not a reason for an error)."""
    if cookie in LANGUAGES:
        return str(cookie)
    ranked = _accept_language(accept_language or "")
    return ranked[0][2] if ranked else DEFAULT_LANGUAGE


@functools.lru_cache(maxsize=None)
def document(name: str, lang: str) -> str:
    """A long text kept whole per language (`web/<name>/<lang>.html`, e.g. the help): prose is translated as a
    document, not sentence by sentence. English when the language has none. Trusted markup, shipped read-only."""
    folder = web_dir() / name
    path = folder / f"{lang}.html"
    if not path.is_file():
        path = folder / f"{DEFAULT_LANGUAGE}.html"
    return path.read_text(encoding="utf-8")


# t('a msgid') or t("a msgid") in a page script: the scripts translate literals only.
_SCRIPT_MSGID = re.compile(r"\bt\(\s*(['\"])(.*?)(?<!\\)\1")


def msgids_in_script(text: str) -> list[str]:
    """The msgids a page script's `t(...)` calls name, unescaped as JavaScript would."""
    return [json.loads('"' + raw.replace('"', '\\"').replace("\\'", "'") + '"')
            for _quote, raw in _SCRIPT_MSGID.findall(text)]


@functools.lru_cache(maxsize=None)
def script_msgids() -> frozenset[str]:
    """Every msgid the shipped scripts (`web/static/js`) translate: all a browser needs of the catalog. The
    server renders the rest (templates, notifications, refusals) itself, so the pages' catalog is a quarter
    of the whole (German: about 5 KB compressed instead of 21 KB on every cold page load)."""
    found: set[str] = set()
    for path in sorted((web_dir() / "static" / "js").glob("*.js")):
        found.update(msgids_in_script(path.read_text(encoding="utf-8")))
    return frozenset(found)


def script_body(lang: str) -> bytes:
    """The scripts' part of the catalog as a script for pages: `window.EMS_I18N = {lang, locale, messages}`."""
    wanted = script_msgids()
    messages = {msgid: text for msgid, text in catalog(lang).items() if msgid in wanted}
    payload = {"lang": lang, "locale": LOCALE_TAGS.get(lang, "en-GB"), "messages": messages}
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # "</" cannot end a script element early; U+2028/9 are line ends to old JS engines.
    text = text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.EMS_I18N={text};\n".encode("utf-8")


@functools.lru_cache(maxsize=None)
def script_body_gzip(lang: str) -> bytes:
    return gzip.compress(script_body(lang), compresslevel=9, mtime=0)


@functools.lru_cache(maxsize=None)
def script_version(lang: str) -> str:
    """A short content hash: the script's URL changes exactly when its text does."""
    return hashlib.sha256(script_body(lang)).hexdigest()[:12]


@dataclass(frozen=True)
class Msg:
    """Words translated when the reader is known: a msgid (marked with `mark`) and its parameters. A parameter
    may itself be a `Msg` or a list of them (joined by ", "), translated with the whole; a float is written with
    the language's decimal separator."""

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def render(self, lang: str = DEFAULT_LANGUAGE) -> str:
        return render(self.msgid, self.params, lang)

    def __str__(self) -> str:
        return self.render()


def _param(value: Any, lang: str) -> str:
    if isinstance(value, Msg):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return ", ".join(dict.fromkeys(_param(v, lang) for v in value))
    if isinstance(value, float) and not isinstance(value, bool):
        # As precise as the number is (a message may quote what the reader typed: 1.001 is not "1"); a text that
        # shows a measurement rounds it first.
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.12g}"
        return text.replace(".", ",") if lang == "de" else text
    return str(value)


def render(msgid: str, params: Mapping[str, Any] | None = None, lang: str = DEFAULT_LANGUAGE) -> str:
    """`msgid` in `lang` with its parameters filled in (see `Msg`)."""
    text = catalog(lang).get(msgid, msgid) if lang in LANGUAGES else msgid
    return fill(text, {name: _param(value, lang) for name, value in (params or {}).items()})
