"""Markdown and HTML reports: content, and hostile replies that must stay escaped and small."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mimicry.core.compare import Comparison, compare_reports
from mimicry.core.gates import evaluate_gates, parse_gate, parse_regression
from mimicry.reports import excerpt, safe_text
from mimicry.reports.explorer import EXPLORER_SCRIPT, script_hash
from mimicry.reports.html import rate_by_prompt_length, render_html, write_html
from mimicry.reports.markdown import (
    STEP_SUMMARY_ENV,
    append_step_summary,
    md_text,
    render_markdown,
    write_markdown,
)
from tests.reports.factory import BEHAVIORS, make_report, make_sample

MEGABYTE_REPLY = "{'id': " + "x" * 1_000_000 + "}"
HOSTILE_REPLIES = [
    "<script>alert('pwned')</script>",
    "a | b | c\n| --- |\n| injected row |",
    "``` code fence ``` and `tick`",
    MEGABYTE_REPLY,
    "lone \udc80 surrogate \ud800 and NUL \x00 and RLO \u202e evil",
    "$\\int x$ math and <img src=http://example.com/x.png> and &amp; entity",
    "**bold** _it_ [link](http://example.com) ~~strike~~ ![img](x.png)",
]


@pytest.fixture(scope="module")
def hostile() -> tuple[dict[str, Any], dict[str, Any], Comparison]:
    """A baseline and a current run whose flipped samples carry hostile replies."""
    base_samples = []
    cur_samples = []
    for i, reply in enumerate(HOSTILE_REPLIES):
        base_samples.append(
            make_sample(f"s{i}", True, index=i, reply=reply, prompt_chars=500 + 300 * i)
        )
        cur_samples.append(
            make_sample(f"s{i}", False, index=i, reply=reply, prompt_chars=500 + 300 * i)
        )
    for i in range(len(HOSTILE_REPLIES), 20):
        base_samples.append(make_sample(f"s{i}", i % 2 == 0, index=i, prompt_chars=500 + 300 * i))
        cur_samples.append(make_sample(f"s{i}", i % 2 == 0, index=i, prompt_chars=500 + 300 * i))
    base = make_report(base_samples, model="qwen2:0.5b")
    cur = make_report(cur_samples, model="evil<b>|`model`\udc80")
    return base, cur, compare_reports(base, cur)


# -- text helpers --------------------------------------------------------------------------------


def test_safe_text_makes_every_character_visible_and_encodable() -> None:
    text = safe_text("a\udc80b\x00c\u202ed\ne\tf")

    assert text == "a\\udc80b\\x00c\\u202ed\\ne\\tf"
    text.encode("utf-8")
    assert safe_text("line\nbreak", keep_newlines=True) == "line\nbreak"
    assert safe_text("plain ünïcode ✓") == "plain ünïcode ✓"


def test_excerpt_cuts_before_escaping_and_says_the_size() -> None:
    assert excerpt("x" * 1_000_000, 10) == "xxxxxxxxxx… (1,000,000 chars)"
    assert excerpt(None) == "(no reply)"
    assert excerpt("\x00" * 5, 3) == "\\x00\\x00\\x00… (5 chars)"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a|b", "a\\|b"),
        ("`x`", "\\`x\\`"),
        ("<b>&", "&lt;b&gt;&amp;"),
        ("$x$", "\\$x\\$"),
        ("a\\b", "a\\\\b"),
        ("*a* _b_ [c] ~d~ !e #f", "\\*a\\* \\_b\\_ \\[c\\] \\~d\\~ \\!e \\#f"),
        ("one\ntwo", "one\\\\ntwo"),
    ],
)
def test_md_text_escapes_markdown_and_html(raw: str, escaped: str) -> None:
    assert md_text(raw) == escaped


# -- Markdown ------------------------------------------------------------------------------------


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_has_the_tables_gates_and_flips(
    hostile: tuple[dict[str, Any], dict[str, Any], Comparison],
) -> None:
    base, cur, comparison = hostile
    outcomes = evaluate_gates(
        [parse_gate("copies_braces>=0.3"), parse_regression("copies_braces:0.05")], cur, comparison
    )

    md = render_markdown(cur, comparison=comparison, baseline=base, outcomes=outcomes)

    assert "### Behaviors" in md
    assert "| copies\\_braces | 20 | 6 | 30.0% | [14.5%, 51.9%] | 0 | 0 |" in md
    assert "### Comparison with the baseline" in md
    assert "| copies\\_braces | 20 | 65.0% | 30.0% | -35.0 [" in md
    assert "| 7 | 0 | 0.0156 |" in md
    assert "**❌ 1 of 2 gates failed**" in md
    assert "| ❌ failed | copies\\_braces:0.05 |" in md
    assert "| ✅ passed | copies\\_braces&gt;=0.3 |" in md
    assert "### Flipped samples" in md
    assert "> ⚠️ **Warning:**" not in md  # only the model differs: a note, not a warning
    assert "Note: different models" in md


def test_markdown_with_hostile_replies_stays_escaped_and_small(
    hostile: tuple[dict[str, Any], dict[str, Any], Comparison],
) -> None:
    base, cur, comparison = hostile

    md = render_markdown(cur, comparison=comparison, baseline=base)

    md.encode("utf-8")  # no lone surrogate survives
    assert len(md) < 20_000  # the 1 MB reply is an excerpt
    assert "1,000,008 chars" in md
    assert "<script" not in md
    assert "<img" not in md
    assert "<b>" not in md
    assert "&lt;script&gt;" in md
    assert re.search(r"(?<!\\)`", md) is None  # no code span can open
    assert re.search(r"(?<!\\)\$", md) is None  # no math
    assert "\\udc80" in md
    assert "\\u202e" in md
    assert "\u202e" not in md
    table_rows = [line for line in md.splitlines() if line.startswith("| ")]
    flips = md.split("### Flipped samples", 1)[1].split("###", 1)[0]
    flip_rows = [line for line in flips.splitlines() if line.startswith("|")]
    # every behavior flipped on every hostile sample; a reply's newlines added no row
    assert len(flip_rows) == 2 + len(BEHAVIORS) * len(HOSTILE_REPLIES)
    for line in table_rows:
        header_cells = _unescaped_pipes(line)
        assert header_cells >= 3
    assert all(_unescaped_pipes(line) == 6 for line in flip_rows)


def test_markdown_without_comparison_is_just_the_run() -> None:
    report = make_report([make_sample(1, True), make_sample(2, False)])

    md = render_markdown(report)

    assert md.startswith("## mimicry: qwen2:0.5b (ollama)\n")
    assert "INCOMPLETE" not in md
    assert "Comparison" not in md
    assert "Gates" not in md
    assert "Key preservation: id" in md


def test_step_summary_is_appended_when_the_variable_is_set(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")

    written = append_step_summary("## mimicry", {STEP_SUMMARY_ENV: str(summary)})

    assert written == summary
    assert summary.read_text(encoding="utf-8") == "earlier step\n## mimicry\n"
    assert append_step_summary("## mimicry", {}) is None
    assert append_step_summary("## mimicry", {STEP_SUMMARY_ENV: ""}) is None


def test_write_markdown_creates_the_directory(tmp_path: Path) -> None:
    path = write_markdown(tmp_path / "deep" / "summary.md", "x\n")

    assert path.read_text(encoding="utf-8") == "x\n"


# -- HTML ----------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Collects start tags with their attributes, and checks every opened element is closed."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1:] == [tag], f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def page(hostile: tuple[dict[str, Any], dict[str, Any], Comparison]) -> str:
    """The HTML page of the hostile comparison, with gate outcomes."""
    base, cur, comparison = hostile
    outcomes = evaluate_gates([parse_gate("truncates<=0.5")], cur, comparison)
    return render_html(cur, comparison=comparison, baseline=base, outcomes=outcomes)


def test_html_is_well_formed_self_contained_and_has_four_charts(page: str) -> None:
    parser = _Tags()
    parser.feed(page)
    parser.close()

    tags = [t for t, _ in parser.tags]
    assert parser.open == []
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    # one executable script (the explorer, allowed by its hash), the rest inert data blocks
    assert [a for a in scripts if a.get("type") != "application/x-mimicry"] == [{}]
    assert page.count(f"<script>{EXPLORER_SCRIPT}</script>") == 1
    assert f"script-src {script_hash()}" in page
    assert "img" not in tags
    assert "link" not in tags
    assert tags.count("svg") == 4  # rates, side by side, differences, by prompt length
    for _, attrs in parser.tags:
        for name in ("src", "href", "xlink:href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (name, value)
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL):
        ET.fromstring(svg)  # each inline chart is valid XML
    ids = [attrs["id"] for _, attrs in parser.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))  # several charts in one page, no id twice
    references = re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', page)
    assert references
    assert {a or b for a, b in references} <= set(ids)


def test_html_with_hostile_replies_stays_escaped_and_small(page: str) -> None:
    page.encode("utf-8")
    assert len(page) < 600_000  # four charts, excerpts and the explorer, not the 1 MB reply
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "evil&lt;b&gt;|`model`\\udc80" in page
    assert "\\udc80" in page
    assert "\u202e" not in page
    assert "1,000,008 chars" in page


def test_html_charts_are_deterministic(
    hostile: tuple[dict[str, Any], dict[str, Any], Comparison],
) -> None:
    _, cur, _ = hostile

    assert render_html(cur) == render_html(cur)


def test_html_without_comparison_has_two_charts(tmp_path: Path) -> None:
    report = make_report([make_sample(i, i % 3 == 0, prompt_chars=100 * i) for i in range(12)])

    path = write_html(tmp_path / "out" / "r.html", render_html(report))

    page = path.read_text(encoding="utf-8")
    assert page.count("<svg") == 2
    assert "Comparison with the baseline" not in page


def test_html_of_a_run_with_no_judged_sample_still_renders() -> None:
    report = make_report([make_sample(1, error="timeout"), make_sample(2, error="timeout")])

    page = render_html(report)

    assert page.count("<svg") == 1  # the rates chart; no ok sample has a length bucket


# -- prompt-length buckets -----------------------------------------------------------------------


def test_prompt_length_buckets_split_at_quantiles() -> None:
    samples = [make_sample(i, i >= 4, prompt_chars=100 * (i + 1)) for i in range(8)]

    buckets = rate_by_prompt_length(samples, ["copies_braces"], buckets=4)

    assert [(b.low, b.high, b.samples) for b in buckets] == [
        (100, 200, 2),
        (300, 400, 2),
        (500, 600, 2),
        (700, 800, 2),
    ]
    assert [b.rates["copies_braces"].rate for b in buckets] == [0.0, 0.0, 1.0, 1.0]
    assert buckets[0].label == "100–200"


def test_prompt_length_buckets_merge_equal_edges_and_skip_errors() -> None:
    samples = [make_sample(i, True, prompt_chars=500) for i in range(5)]
    samples.append(make_sample(9, error="timeout", prompt_chars=9999))

    buckets = rate_by_prompt_length(samples, ["truncates"])

    assert [(b.low, b.high, b.samples) for b in buckets] == [(500, 500, 5)]
    assert rate_by_prompt_length([], ["truncates"]) == []


# -- headless Chromium ---------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium is not installed (CI installs the Debian package `chromium`)",
)
def test_html_renders_its_charts_in_headless_chromium(page: str, tmp_path: Path) -> None:
    path = write_html(tmp_path / "report.html", page)

    result = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count("<svg") == 4, dom[:2000]
    assert dom.count("<script>") == 1  # the explorer; every other script element is a data block
    assert re.findall(r"<script(?: [^>]*)?>", dom).count("<script>") == 1
    assert "&lt;script&gt;alert" in dom  # the reply is text in the rendered DOM, not markup
