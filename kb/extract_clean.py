"""Raw document → clean text: HTML to text, and page debris cut (breadcrumbs, login walls, "recommended
projects" cards) so extraction sees only the article.

Debris is recognised by shape, not by the text of particular pages: end-of-article markers, breadcrumb and
byline lines, and a trailing run of "cards" (a name glued to its own description, a language tag and counters).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from pydantic import BaseModel

# Lines after which nothing belongs to the article (site chrome of Chinese and English blogs / mirrors).
END_MARKERS = re.compile(
    r"^(登录后查看全文|热门项目推荐|相关项目推荐|相关推荐|相关文章|推荐阅读|项目优选|猜你喜欢|"
    r"Related (articles|posts|projects)|Recommended( for you| projects)?|You may also like|Sign in to (read|view)"
    r"|Read more)\b",
    re.IGNORECASE,
)
BREADCRUMB = re.compile(r"^(首页|Home)\s*$|^/\s+\S")
BYLINE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?\s*(作者|by)\b", re.IGNORECASE)
SENTENCE_END = re.compile(r"[。！？.!?:：;；)）\]]\s*$")
# A "card": a repository/model name glued to its own description ("MiniMax-M2MiniMax-M2是…") or a line
# ending with a language tag and counters ("…Python00", "…Kotlin07").
CARD_GLUED = re.compile(r"^([A-Za-z][\w.\-]{2,60}?)\1")
CARD_COUNTERS = re.compile(r"(Python|Jupyter Notebook|Kotlin|Jinja|Less|Java|TypeScript|JavaScript|Go|Rust|C\+\+|C|"
                           r"Dart|Cangjie|Vue|Dockerfile|Shell|HTML|CSS|Swift)?\d{2,3}$")
MAX_DOC_CHARS = 400_000


class CleanDocument(BaseModel):
    title: str
    text: str
    removed_lines: int = 0
    format: str = "text"


class _TextExtractor(HTMLParser):
    """HTML → text lines: block elements become line breaks; script/style/nav/footer/aside are dropped."""

    SKIP = {"script", "style", "nav", "footer", "aside", "header", "noscript", "svg", "form", "button"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "tr", "section", "article",
             "blockquote", "ul", "ol", "table", "code"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self.skip_depth:
            self.parts.append(data)


def looks_html(text: str) -> bool:
    head = text[:2000].lower()
    return "<html" in head or "<!doctype html" in head or bool(re.search(r"<(p|div|h1|body|article)[\s>]", head))


def html_to_text(text: str) -> tuple[str, str]:
    """(title, text) of an HTML page."""
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    body = html.unescape("".join(parser.parts))
    body = "\n".join(" ".join(line.split()) for line in body.splitlines())
    return " ".join(parser.title.split()), re.sub(r"\n{3,}", "\n\n", body)


def _is_card(line: str) -> bool:
    s = line.strip()
    if not s:
        return True
    if CARD_GLUED.match(s) or (CARD_COUNTERS.search(s) and not SENTENCE_END.search(s) and len(s) > 6):
        return True
    # short fragments without sentence punctuation (a card's language, counts, a project name)
    return len(s) <= 12 and not SENTENCE_END.search(s) and not re.search(r"[=_]", s)


def strip_debris(lines: list[str]) -> tuple[list[str], int]:
    """Article lines without breadcrumbs, bylines, login walls and trailing recommendation cards."""
    kept: list[str] = []
    for line in lines:
        s = line.strip()
        if END_MARKERS.match(s):
            break
        if BREADCRUMB.match(s) or BYLINE.match(s):
            continue
        kept.append(line.rstrip())
    # trailing cards: walk back over the last lines while they look like cards, keep at least one real line
    end = len(kept)
    while end > 1 and _is_card(kept[end - 1]):
        end -= 1
    cut = kept[:end]
    # collapse leading blank lines and a title repeated under the breadcrumb
    while cut and not cut[0].strip():
        cut.pop(0)
    if len(cut) > 2 and cut[0].strip() and cut[0].strip() == next((c.strip() for c in cut[1:] if c.strip()), ""):
        cut.pop(0)
    return cut, len(lines) - len(cut)


def clean_document(raw: str, name: str = "document") -> CleanDocument:
    """Article text and title from a Markdown / text / HTML document (capped at MAX_DOC_CHARS)."""
    raw = raw[:MAX_DOC_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    fmt, title = "text", ""
    if looks_html(raw):
        fmt = "html"
        title, raw = html_to_text(raw)
    elif re.search(r"^#{1,6}\s+\S", raw, re.MULTILINE):
        fmt = "markdown"
    lines, removed = strip_debris(raw.split("\n"))
    text = "\n".join(lines).strip()
    if not title:
        first = next((ln.strip() for ln in lines if ln.strip()), name)
        title = re.sub(r"^#+\s*", "", first)
    return CleanDocument(title=title[:200], text=text, removed_lines=removed, format=fmt)
