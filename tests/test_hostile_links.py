"""Shared links with hostile or odd query parameters, on every page (AppTest): markdown and HTML in
``?demo=``, ``?word=`` and ``?q=``, very long values, path traversal, unknown names. Every markdown string the
page sends to the browser is rendered (CommonMark with raw HTML allowed, the worst case) and must not make an
image, link, script or frame point at another site; each case ends in a clear message."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from cae_core import run_methods
from cae_core.errors import quoted
from explorer.state import WORKSPACE_KEY, Workspace
from polysemy_data import crane_bundle

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = [None] + sorted(f"pages/{path.name}" for path in (REPO / "pages").glob("[0-9]_*.py"))
TIMEOUT = 300
FOREIGN = "evil.example"
HOSTILE = {
    "markdown": f"![x](http://{FOREIGN}/a.png) **bold** [link](http://{FOREIGN}/b) <http://{FOREIGN}/c>",
    "html": f'<img src="http://{FOREIGN}/d.png" onerror="alert(1)"><script>fetch("http://{FOREIGN}/e")</script>',
    "long": f"![x](http://{FOREIGN}/f.png)" + "A" * 5000,
    "traversal": "../../../../etc/passwd",
    "unknown": "no-such-name",
}
MAX_WORD, MAX_PHRASE = 64, 300  # what the Polysemy and Search pages keep of a linked word or phrase
# proto fields Streamlit renders as markdown: element bodies, widget labels and help, image captions, options
MARKDOWN_FIELDS = {"body", "label", "help", "caption", "placeholder", "options"}
MARKDOWN = MarkdownIt("commonmark", {"html": True})


class _Rendered(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def markdown_sources(at: AppTest) -> list[str]:
    """Every string on the page that the browser renders as markdown."""
    found: list[str] = []

    def collect(value, key: str | None) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                collect(item, name)
        elif isinstance(value, list):
            for item in value:
                collect(item, key)
        elif isinstance(value, str) and key in MARKDOWN_FIELDS:
            found.append(value)

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "DESCRIPTOR"):
            collect(MessageToDict(proto), None)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def render(source: str) -> _Rendered:
    rendered = _Rendered()
    rendered.feed(MARKDOWN.render(source))
    return rendered


def assert_nothing_foreign(at: AppTest) -> None:
    assert not at.exception, [element.message for element in at.exception]
    for source in markdown_sources(at):
        # a bare URL becomes a link under GitHub-flavoured markdown (Streamlit's); escaped, it stays text
        assert f"://{FOREIGN}" not in source, source
        for tag, attrs in render(source).tags:
            assert tag not in ("script", "iframe", "object", "embed"), (tag, source)
            assert not any(FOREIGN in (value or "") for _, value in attrs), (tag, attrs, source)


def shown_text(elements) -> str:
    """The text a reader sees in these elements (markdown rendered, escapes resolved)."""
    return "\n".join("".join(render(str(element.value)).text) for element in elements)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("page", PAGES)
def test_a_hostile_demo_link_loads_nothing_and_says_so_on_every_page(page):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page is not None:
        at.switch_page(page)
    for kind, value in HOSTILE.items():  # one session: each new value is a new link to honour
        for name in ("demo", "word", "q"):
            at.query_params[name] = value
        at.run()
        assert_nothing_foreign(at)
        errors = shown_text(at.error)
        assert "no demo called" in errors, (kind, errors)
        assert quoted(value) in errors  # the name as linked, cut when long
        assert at.session_state[WORKSPACE_KEY].bundle is None


@pytest.fixture(scope="module")
def crane_run():
    bundle = crane_bundle()
    return bundle, run_methods(bundle, n_clusters=4)


def loaded(crane_run) -> Workspace:
    bundle, results = crane_run
    return Workspace(bundle=bundle, dataset_name="planted cranes", n_clusters=4, results=dict(results))


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_word_is_shown_literally_on_the_polysemy_page(crane_run, kind):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[WORKSPACE_KEY] = loaded(crane_run)
    at.switch_page("pages/6_Polysemy.py")
    at.query_params["word"] = HOSTILE[kind]
    at.run()
    assert_nothing_foreign(at)
    word = HOSTILE[kind]
    if len(word) > MAX_WORD:
        assert f"The link's word is {len(word):,} characters long; only its first {MAX_WORD} are used" in \
            shown_text(at.warning)
    assert f"WordNet senses of “{word[:MAX_WORD].strip()}”" in shown_text(at.subheader)
    assert "WordNet 3.0 has no noun sense for this word." in shown_text(at.info)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_phrase_is_shown_literally_on_the_search_page(crane_run, kind):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[WORKSPACE_KEY] = loaded(crane_run)
    at.switch_page("pages/7_Search.py")
    at.query_params["q"] = HOSTILE[kind]
    at.run()
    assert_nothing_foreign(at)
    phrase = HOSTILE[kind]
    if len(phrase) > MAX_PHRASE:
        assert f"The link's phrase is {len(phrase):,} characters long; only its first {MAX_PHRASE} are used" in \
            shown_text(at.warning)
    phrase = phrase[:MAX_PHRASE]
    # the phrase heads the result, as typed, with where its embedding came from (or why there is none)
    assert f"“{phrase.strip()}”" in shown_text([*at.info, *at.caption, *at.error])


def test_the_checks_catch_unescaped_markdown():
    """The detector itself: raw markdown or HTML with a foreign source is caught (so a pass means something)."""
    for value in HOSTILE.values():
        if FOREIGN in value:
            tags = render(value).tags
            assert any(FOREIGN in (v or "") for _, attrs in tags for _, v in attrs) or f"://{FOREIGN}" in value
