"""The language sweep's checks (tests/test_console_language.py): what a page shows a
reader, and what in it is a raw key, an internal name, English on a Chinese page or
Chinese beyond data on an English one. Pure: text in, problems out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from coordinator.web.i18n import MESSAGES

# English a Chinese page may hold: product names, acronyms, the brand, the language switch.
ALLOWED_ENGLISH = {"SMS", "CSV", "HTML", "IPTV", "DingTalk", "WeCom", "Coordinator", "English", "P90", "GSM", "UCS",
                   "API", "APP", "SP", "GB", "WLAN", "Alertmanager", "PagerDuty"}
# Chinese an English page may hold: the language switch; the drill marker, quoted as the
# frontline's messages carry it ("As a drill (messages marked 【演练】)").
ALLOWED_CHINESE = {"中文", "【演练】"}
# Internal names that must never show as words on a page (whole words, either language's page).
ENUMS_ANYWHERE = {"None", "True", "False", "surge_data", "stand_down", "script_sent", "role_assigned"}
# Enum values that are English words: on a Chinese page the English-word check finds them;
# on an English page they are words, and only their raw pairs are looked for.
RAW_PAIRS_EN = [r"\bmajor scripted\b", r"\b1 complaints\b"]
KEY_SPACES = sorted({key.split(".", 1)[0] for key in MESSAGES if "." in key}, key=len, reverse=True)
RAW_KEY = re.compile(r"(?<![\w/.-])(?:" + "|".join(map(re.escape, KEY_SPACES)) + r")\.[a-z_][a-z0-9_.-]*[a-z0-9_]")
ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z']+")
CHINESE = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uff00-\uffef]+")


class VisibleText(HTMLParser):
    """The text a reader sees; with `other_lang`, not what an element marks as written in
    that language (lang="zh-CN": the script's own text on an English page)."""

    SKIP = {"script", "style", "code"}
    ATTRS = {"title", "placeholder", "aria-label", "alt"}

    def __init__(self, other_lang: str = "") -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.other_lang = other_lang
        self.marked: list[str] = []  # the open elements since one marked other_lang, that one first

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.marked:
            self.marked.append(tag)
            return
        if self.other_lang and (dict(attrs).get("lang") or "").startswith(self.other_lang):
            self.marked.append(tag)
            return
        if tag in self.SKIP:
            self.skipping += 1
        self.parts.extend(v for k, v in attrs if k in self.ATTRS and v)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.marked:
            self.parts.extend(v for k, v in attrs if k in self.ATTRS and v)

    def handle_endtag(self, tag: str) -> None:
        if self.marked:
            while self.marked and self.marked.pop() != tag:  # void elements (br, input) never close
                pass
            return
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping and not self.marked:
            self.parts.append(data)


def visible(page: str, lang: str = "zh") -> str:
    """The page's visible text; on an English page without what is marked Chinese."""
    parser = VisibleText("zh" if lang == "en" else "")
    parser.feed(page)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


@dataclass
class Ids:
    """What is taken out of a text before its words are read: ids are not words."""

    words: set[str] = field(default_factory=set)
    data: set[str] = field(default_factory=set)  # data, not the page's words (data_texts), taken out as it is
    patterns: list[str] = field(default_factory=lambda: [
        r"\b(?:INC|DRL)-\d{8}-[0-9a-z]+\b", r"[\w.+-]+@[\w.-]+", r"\bAsia/Shanghai\b", r"\bv\d+\b",
        r"\+\d{6,}", r"事件码\s*[A-Z0-9]+", r"“1 [A-Z0-9]+”",  # the incident's code: 〔事件码HLG〕
        r"https?://\S+", r"\b[a-z][a-z0-9-]*-\d{6,}[\w-]*",  # addresses; a drill run's id (drill, minute)
        r"\b[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b",  # hex: hashes, the tail of an id
    ])

    def strip(self, text: str) -> str:
        for pattern in self.patterns:
            text = re.sub(pattern, " ", text)
        for word in sorted(self.words, key=len, reverse=True):
            text = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", " ", text)
        return text

    def strip_data(self, text: str) -> str:
        for value in sorted(self.data | ALLOWED_CHINESE, key=len, reverse=True):
            text = text.replace(value, " ")
        return text


def data_texts(*sources: object) -> set[str]:
    """Every string holding Chinese in `sources` (the catalog's parts, incidents, events,
    messages), and each of its lines: what a page shows as data."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            if CHINESE.search(value):  # as a page shows it: its runs of white space as one space
                found.add(re.sub(r"\s+", " ", value).strip())
                found.update(re.sub(r"\s+", " ", line).strip() for line in value.splitlines() if CHINESE.search(line))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for v in value:
                walk(v)
        elif hasattr(value, "model_dump"):
            walk(value.model_dump(mode="json", warnings=False))
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                if name != "templates":
                    walk(getattr(value, name))
    for source in sources:
        walk(source)
    return {v for v in found if v}


def problems(text: str, lang: str, ids: Ids) -> list[str]:
    found = [f"raw key {m}" for m in RAW_KEY.findall(text)]
    found += [f"internal name {w}" for w in ENUMS_ANYWHERE if re.search(rf"(?<![\w-]){w}(?![\w-])", text)]
    found += [f"internal name {m}" for m in re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", ids.strip(text))]
    found += [f"internal name {m}" for m in re.findall(r"\b[a-z_]+=", text)]  # role=leader, level=0
    if lang == "zh":
        words = set(ENGLISH_WORD.findall(ids.strip(ids.strip_data(text)))) - ALLOWED_ENGLISH
        found += [f"English word {w!r}" for w in sorted(words)]
    else:
        found += [f"raw {m}" for p in RAW_PAIRS_EN for m in re.findall(p, text)]
        found += [f"Chinese {m!r}" for m in CHINESE.findall(ids.strip(ids.strip_data(text)))]
    return found
