"""The sample explorer of the HTML report: every sample, its verdicts, and its reply beside its
record with what was copied, changed, dropped and where it stopped.

Data (built here, rendered by the page's one inline script; see README, "Reading the report"):

- the *index*, one object of columns, one entry per sample: id, repeat, status, a verdict code
  per behavior (``1`` shown, ``0`` not shown, ``n`` not judged, ``e`` error, ``-`` not run), a
  flip code per behavior against the baseline (``-`` pass to fail, ``+`` fail to pass, ``.``
  neither), the head of the reply (the text searched, :data:`SEARCH_CHARS` characters), tokens,
  done reason;
- *detail chunks* of :data:`CHUNK_SAMPLES` samples each: per sample the annotated record and
  reply as pieces (text and marks, long stretches elided to :data:`REPLY_BUDGET` and
  :data:`RECORD_BUDGET` characters), the key table, each verdict's explanation, test errors,
  counts and measures.

Each is JSON, gzip-compressed and base64-encoded in a ``<script type="application/x-mimicry">``
data block (never executed; base64 cannot close the element). The script inflates the index on
load (``DecompressionStream``, built into browsers) and a chunk only when one of its samples is
opened, renders 50 rows a page, and builds every element with ``textContent``: model text is
never parsed as HTML. Its exact text is allowed by a hash in the page's Content-Security-Policy,
which forbids every other script and every network request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mimicry.core.annotate import Annotation, Piece, annotate, pieces, segments
from mimicry.core.compare import Comparison
from mimicry.reports import (
    behavior_definition,
    behavior_names,
    safe_text,
    sample_measures,
)

#: Samples per detail chunk (one is inflated when one of its samples is opened).
CHUNK_SAMPLES = 250
#: Characters of the reply kept in the index: the searched text, and the table's excerpt.
SEARCH_CHARS = 500
#: Characters shown of a reply and of a record in a sample's view (the rest is elided).
REPLY_BUDGET = 5_000
RECORD_BUDGET = 5_000
#: Rows per page of the sample table.
PAGE_ROWS = 50

#: One letter per mark in the pieces of a sample's view.
MARK_CODES = {
    "copied": "c",
    "same": "s",
    "changed": "x",
    "missing": "m",
    "extra": "e",
    "outside": "o",
    "unreached": "u",
    "stop": "S",
    "elided": "g",
}
_VERDICT_CODES = {True: "1", False: "0", None: "n"}
_MEASURES_SHOWN = (
    "form",
    "read_method",
    "reply_chars",
    "cut_off",
    "imitates_record",
    "prompt_kind",
    "prompt_similarity",
    "id_changed",
    "verbatim_share",
    "shorter_than_input",
)
_COUNTS = ("done_reason", "eval_count", "prompt_eval_count", "prompt_chars", "cached")


def encode_block(data: object) -> str:
    """JSON, gzip (no timestamp, so the same data gives the same page), base64."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def decode_block(text: str) -> Any:
    """The inverse of :func:`encode_block` (for tests and tools)."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))


def explorer_data(
    report: Mapping[str, Any], comparison: Comparison | None = None
) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """The explorer's index and detail chunks for ``report`` (flips from ``comparison``)."""
    behaviors = behavior_names(report)
    samples = [s for s in report.get("samples") or [] if isinstance(s, Mapping)]
    records = report.get("records")
    records = records if isinstance(records, Mapping) else {}
    template = str((report.get("run") or {}).get("prompt_template") or "repr")
    flips: dict[str, dict[str, str]] = {}
    if comparison is not None:
        for row in comparison.behaviors:
            for sample_id in row.pass_to_fail:
                flips.setdefault(sample_id, {})[row.behavior] = "-"
            for sample_id in row.fail_to_pass:
                flips.setdefault(sample_id, {})[row.behavior] = "+"
    columns: dict[str, list[Any]] = {
        key: [] for key in ("id", "rep", "st", "v", "f", "q", "tok", "dr", "len")
    }
    chunks: list[list[dict[str, Any]]] = []
    for sample in samples:
        sample_id = str(sample.get("id"))
        verdicts = sample.get("behaviors") or {}
        test_errors = sample.get("test_errors") or {}
        error = sample.get("status") == "error"
        codes = "".join(
            "e"
            if error or name in test_errors
            else _VERDICT_CODES.get(verdicts[name], "n")
            if name in verdicts
            else "-"
            for name in behaviors
        )
        flipped = flips.get(sample_id, {})
        reply = sample.get("reply")
        reply = reply if isinstance(reply, str) else None
        columns["id"].append(safe_text(sample_id))
        columns["rep"].append(int(sample.get("repeat") or 0))
        columns["st"].append("e" if error else "o")
        columns["v"].append(codes)
        columns["f"].append("".join(flipped.get(name, ".") for name in behaviors))
        columns["q"].append(None if reply is None else safe_text(reply[:SEARCH_CHARS]))
        columns["tok"].append(_int(sample.get("eval_count")))
        columns["dr"].append(_str(sample.get("done_reason")))
        columns["len"].append(None if reply is None else len(reply))
        record = records.get(sample_id)
        detail = sample_detail(
            sample, record if isinstance(record, Mapping) else None, template, behaviors
        )
        if not chunks or len(chunks[-1]) >= CHUNK_SAMPLES:
            chunks.append([])
        chunks[-1].append(detail)
    index = {
        "format": 1,
        "behaviors": [safe_text(name) for name in behaviors],
        "definitions": [
            None if (meaning := behavior_definition(report, name)) is None else safe_text(meaning)
            for name in behaviors
        ],
        "baseline": comparison is not None,
        "chunk": CHUNK_SAMPLES,
        "page": PAGE_ROWS,
        "search_chars": SEARCH_CHARS,
        "records": bool(records),
        "rows": columns,
    }
    return index, chunks


def sample_detail(
    sample: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    template: str,
    behaviors: Sequence[str],
) -> dict[str, Any]:
    """One sample's view: pieces of the record and the reply, keys, explanations, counts."""
    reply = sample.get("reply")
    detail: dict[str, Any] = {
        "x": {
            name: safe_text(text)
            for name, text in (sample.get("explanations") or {}).items()
            if name in behaviors and isinstance(text, str)
        },
        "te": {
            name: safe_text(str(text)[:2_000])
            for name, text in (sample.get("test_errors") or {}).items()
        },
        "c": {name: _plain(sample.get(name)) for name in _COUNTS if sample.get(name) is not None},
        "m": {
            name: _plain(value)
            for name, value in sample_measures(sample).items()
            if name in _MEASURES_SHOWN
        },
        "fl": [safe_text(str(flag)) for flag in sample.get("flags") or []],
    }
    if sample.get("status") == "error":
        detail["e"] = safe_text(str(sample.get("error") or "no reply"))[:2_000]
    if isinstance(reply, str):
        annotation = annotate(
            record or {},
            reply,
            template=template,
            done_reason=_str(sample.get("done_reason")),
        )
        detail["p"] = _encode_pieces(
            pieces(reply, segments(len(reply), annotation.reply_marks()), budget=REPLY_BUDGET)
        )
        detail["stop"] = (
            None if annotation.stop is None else [annotation.stop.reason, _opt(annotation.stop.key)]
        )
        if record is not None:
            detail.update(_record_view(annotation))
    elif record is not None:
        text = annotate(record, "", template=template).record_text
        detail["r"] = _encode_pieces(pieces(text, segments(len(text), []), budget=RECORD_BUDGET))
    return detail


def _record_view(annotation: Annotation) -> dict[str, Any]:
    text = annotation.record_text
    return {
        "r": _encode_pieces(
            pieces(text, segments(len(text), annotation.record_marks()), budget=RECORD_BUDGET)
        ),
        "k": [[safe_text(k.key), k.status, int(k.cut)] for k in annotation.keys],
        "xk": [safe_text(name) for name, _ in annotation.extra_keys],
        "cc": annotation.copied_chars,
    }


def _encode_pieces(found: Sequence[Piece]) -> list[list[Any]]:
    """Pieces as ``[text, marks]`` or ``[text, marks, key]``; a gap as ``[chars, "g"]``."""
    encoded: list[list[Any]] = []
    for piece in found:
        marks = "".join(MARK_CODES[kind] for kind in piece.kinds)
        if piece.elided:
            encoded.append([piece.elided, "g"])
            continue
        item: list[Any] = [safe_text(piece.text, keep_newlines=True), marks]
        if piece.key is not None:
            item.append(safe_text(piece.key))
        encoded.append(item)
    return encoded


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return safe_text(value) if isinstance(value, str) else None


def _opt(value: str | None) -> str | None:
    return None if value is None else safe_text(value)


def _plain(value: object) -> object:
    """A JSON scalar as it is (floats rounded), anything else as safe text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return round(value, 4)
    return safe_text(str(value))[:200]


# -- the page's part ------------------------------------------------------------------------------


def render_explorer(report: Mapping[str, Any], comparison: Comparison | None = None) -> str:
    """The explorer's section of the page: controls, data blocks and the script."""
    import html

    index, chunks = explorer_data(report, comparison)
    behaviors = index["behaviors"]
    options = "".join(
        f'<option value="{i}">{html.escape(safe_text(name))}</option>'
        for i, name in enumerate(behaviors)
    )
    flip_control = (
        '<label>flip against the baseline <select id="mx-flip">'
        '<option value="">any</option><option value="-">pass → fail</option>'
        '<option value="+">fail → pass</option><option value="*">either</option>'
        "</select></label>"
        if comparison is not None
        else ""
    )
    parts = [
        '<section id="samples"><h2>Samples</h2>',
        "<p class=note>Every sample with its verdicts. Filter by behavior and verdict"
        + (", by flip against the baseline" if comparison is not None else "")
        + f", or search the ids and the first {SEARCH_CHARS} characters of each reply; open "
        "a sample to see its reply beside its record.</p>",
        "<noscript><p class=warning>The sample explorer needs JavaScript (the page's one "
        "inline script; no network). The summary above needs none.</p></noscript>",
        '<div id="mx" class="mx" hidden>',
        '<div class="mx-controls">',
        f'<label>behavior <select id="mx-behavior"><option value="">any</option>{options}'
        "</select></label>",
        '<label>verdict <select id="mx-verdict"><option value="">any</option>'
        '<option value="1">shown</option><option value="0">not shown</option>'
        '<option value="n">not judged</option><option value="e">error</option>'
        "</select></label>",
        flip_control,
        '<label>search <input id="mx-search" type="search" placeholder="id or reply text" '
        'autocomplete="off"></label>',
        "</div>",
        '<p id="mx-status" class="mx-status" aria-live="polite"></p>',
        '<div class="mx-table-wrap"><table id="mx-table" class="mx-table"><thead><tr>'
        "<th>#</th><th>sample</th>"
        + "".join(
            f'<th title="{html.escape(safe_text(name), quote=True)}">'
            f"{html.escape(safe_text(name))}</th>"
            for name in behaviors
        )
        + "<th>reply</th><th>tokens</th><th>done</th></tr></thead>"
        '<tbody id="mx-rows"></tbody></table></div>',
        '<div class="mx-pager"><button type="button" id="mx-prev">← previous</button> '
        '<span id="mx-page"></span> <button type="button" id="mx-next">next →</button></div>',
        '<div id="mx-detail" class="mx-detail" hidden></div>',
        "</div>",
        f'<script type="application/x-mimicry" id="mx-index">{encode_block(index)}</script>',
    ]
    for number, chunk in enumerate(chunks):
        parts.append(
            f'<script type="application/x-mimicry" class="mx-chunk" data-chunk="{number}">'
            f"{encode_block(chunk)}</script>"
        )
    parts.append(f"<script>{EXPLORER_SCRIPT}</script>")
    parts.append("</section>")
    return "\n".join(parts)


def script_hash() -> str:
    """The CSP source that allows the explorer's script, and no other."""
    digest = hashlib.sha256(EXPLORER_SCRIPT.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


EXPLORER_STYLE = """
.mx-controls { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center;
               margin: .5em 0; }
.mx-controls input[type=search] { width: 18em; }
.mx-status { color: #444; margin: .3em 0; }
.mx-table-wrap { overflow-x: auto; }
table.mx-table { font-size: .9em; width: 100%; }
table.mx-table > tbody > tr > td { white-space: nowrap; }
table.mx-table > tbody > tr > td.mx-reply div { max-width: 24em; overflow: hidden;
  text-overflow: ellipsis; font-family: ui-monospace, monospace; font-size: .9em; }
table.mx-table > tbody > tr > td.mx-detail-cell { white-space: normal; background: #fff;
  cursor: auto; padding: 0; }
table.mx-table tbody tr.mx-detail-row { cursor: auto; }
table.mx-table tbody tr.mx-detail-row:hover { background: none; }
table.mx-table tbody tr { cursor: pointer; }
table.mx-table tbody tr:hover, table.mx-table tbody tr.mx-open { background: #eef4fb; }
.v1 { color: #1b6e2f; font-weight: 600; } .v0 { color: #a1161b; } .vn { color: #777; }
.ve { color: #fff; background: #a1161b; border-radius: 3px; padding: 0 .25em; }
.fm { color: #a1161b; font-size: .8em; } .fp { color: #1b6e2f; font-size: .8em; }
.mx-pager { margin: .4em 0 1em; }
.mx-detail { border: 2px solid #1f5fa8; border-radius: 4px; padding: .6em 1em; margin: .4em 0;
  position: sticky; left: 0; box-sizing: border-box; max-width: calc(min(1100px, 100vw) - 3em); }
.mx-detail table { margin: .3em 0; }
.mx-detail h3 { margin: .2em 0 .5em; font-size: 1.1em; }
.mx-close { float: right; }
.mx-side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
@media (max-width: 800px) { .mx-side { grid-template-columns: 1fr; } }
.mx-text { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace;
  font-size: .85em; background: #fafafa; border: 1px solid #ddd; padding: .5em;
  max-height: 36em; overflow: auto; margin: .3em 0; }
.mk-c { background: #d4efd9; }
.mk-x { outline: 2px solid #d9731a; outline-offset: -1px; background: #fde6cf; }
.mk-s { border-bottom: 2px solid #2a9d5c; }
.mk-m { background: #f8d3d6; text-decoration: line-through; text-decoration-color: #a1161b; }
.mk-e { outline: 2px dashed #6b4fa0; outline-offset: -1px; }
.mk-o { color: #666; font-style: italic; }
.mk-u { color: #8a8a8a; }
.mk-stop { background: #a1161b; color: #fff; font-family: system-ui, sans-serif;
  font-size: .8em; padding: 0 .35em; border-radius: 3px; margin: 0 .15em; white-space: nowrap; }
.mk-gap { color: #555; background: #eee; font-family: system-ui, sans-serif; font-size: .8em;
  padding: 0 .3em; border-radius: 3px; }
.mx-legend span { margin-right: 1em; white-space: nowrap; }
.mx-keys td, .mx-keys th, .mx-verdicts td, .mx-verdicts th { font-size: .9em; }
"""

# The script runs once; it only reads the data blocks and builds elements with textContent.
EXPLORER_SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById("mx");
  if (!root || typeof DecompressionStream === "undefined") {
    var status0 = document.getElementById("mx-status");
    if (root && status0) { root.hidden = false; status0.textContent =
      "This browser cannot read the embedded samples (no DecompressionStream)."; }
    return;
  }
  var $ = function (id) { return document.getElementById(id); };
  var VERDICT = { "1": ["✓", "shown"], "0": ["✗", "not shown"], "n": ["–", "not judged"],
                  "e": ["!", "error"], "-": ["", "not run"] };
  var MARKS = { c: "copied from the record", s: "the record's value", x: "changed value",
                m: "missing from the reply", e: "key the record does not have",
                o: "prose outside the imitation", u: "not reached: the reply stopped before",
                S: "stop", g: "elided" };
  var STOPS = { cut_off: "the reply stops here, inside a value",
                capped: "the reply hit num_predict here (the harness cut it)",
                closed: "the imitation closes here with keys missing" };
  var index = null, rows = null, matches = [], page = 0, chunks = {}, lower = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function inflate(b64) {
    var bin = atob(b64.trim()), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }

  function filter() {
    var b = $("mx-behavior").value, v = $("mx-verdict").value;
    var f = $("mx-flip") ? $("mx-flip").value : "";
    var q = $("mx-search").value.trim().toLowerCase();
    var bi = b === "" ? -1 : Number(b), nb = index.behaviors.length;
    if (q && lower === null) {
      lower = rows.q.map(function (s) { return s === null ? "" : s.toLowerCase(); });
    }
    var ids = rows.id, vs = rows.v, fs = rows.f, out = [];
    for (var i = 0; i < ids.length; i++) {
      if (v !== "" || f !== "") {
        var ok = false;
        for (var j = (bi < 0 ? 0 : bi); j < (bi < 0 ? nb : bi + 1); j++) {
          var vOk = v === "" || vs[i].charAt(j) === v;
          var fc = fs[i].charAt(j);
          var fOk = f === "" || (f === "*" ? fc !== "." : fc === f);
          if (vOk && fOk) { ok = true; break; }
        }
        if (!ok) { continue; }
      }
      if (q && ids[i].toLowerCase().indexOf(q) < 0 && lower[i].indexOf(q) < 0) { continue; }
      out.push(i);
    }
    matches = out;
    page = 0;
    draw();
  }

  function draw() {
    var body = $("mx-rows"), size = index.page;
    var pages = Math.max(1, Math.ceil(matches.length / size));
    if (page >= pages) { page = pages - 1; }
    closeDetail();
    var frag = document.createDocumentFragment();
    var from = page * size, to = Math.min(matches.length, from + size);
    for (var k = from; k < to; k++) { frag.appendChild(row(matches[k])); }
    body.replaceChildren(frag);
    $("mx-status").textContent = matches.length.toLocaleString("en") + " of " +
      rows.id.length.toLocaleString("en") + " samples match";
    $("mx-page").textContent = "page " + (page + 1) + " of " + pages;
    $("mx-prev").disabled = page === 0;
    $("mx-next").disabled = page >= pages - 1;
  }

  function label(i) {
    return rows.id[i] + (rows.rep[i] ? " #" + rows.rep[i] : "");
  }

  function row(i) {
    var tr = el("tr");
    tr.dataset.i = String(i);
    tr.dataset.id = rows.id[i];
    tr.appendChild(el("td", "num", i + 1));
    var idCell = el("td");
    var open = el("button", "mx-open-button", label(i));
    open.type = "button";
    open.title = "open this sample";
    idCell.appendChild(open);
    tr.appendChild(idCell);
    var codes = rows.v[i], flips = rows.f[i];
    for (var j = 0; j < index.behaviors.length; j++) {
      var c = codes.charAt(j), info = VERDICT[c] || ["?", "?"];
      var td = el("td");
      td.appendChild(el("span", "v" + (c === "-" ? "x" : c), info[0]));
      td.title = index.behaviors[j] + ": " + info[1];
      var fc = flips.charAt(j);
      if (fc === "-" || fc === "+") {
        td.appendChild(el("span", fc === "-" ? "fm" : "fp", fc === "-" ? " ↓" : " ↑"));
        td.title += fc === "-" ? " (was shown in the baseline)" :
          " (was not shown in the baseline)";
      }
      td.dataset.verdict = c;
      tr.appendChild(td);
    }
    var text = rows.q[i], cell = el("td", "mx-reply");
    cell.appendChild(el("div", "", text === null ? "(no reply)" :
      text.slice(0, 160).replace(/\s+/g, " ")));
    tr.appendChild(cell);
    tr.appendChild(el("td", "num", rows.tok[i] === null ? "" : rows.tok[i]));
    tr.appendChild(el("td", "", rows.dr[i] === null ? "" : rows.dr[i]));
    tr.addEventListener("click", function () {
      if (tr.classList.contains("mx-open")) { closeDetail(); } else { openSample(i); }
    });
    return tr;
  }

  function chunk(n) {
    if (!chunks[n]) {
      var block = document.querySelector('script.mx-chunk[data-chunk="' + n + '"]');
      chunks[n] = block ? inflate(block.textContent) : Promise.resolve([]);
    }
    return chunks[n];
  }

  function closeDetail() {
    var box = $("mx-detail"), holder = box.parentNode;
    box.hidden = true;
    root.appendChild(box);
    if (holder && holder.parentNode && holder.parentNode.classList.contains("mx-detail-row")) {
      holder.parentNode.remove();
    }
    Array.prototype.forEach.call(document.querySelectorAll("#mx-rows tr.mx-open"),
      function (tr) { tr.classList.remove("mx-open"); });
  }

  function openSample(i) {
    var n = Math.floor(i / index.chunk);
    closeDetail();
    var tr = document.querySelector('#mx-rows tr[data-i="' + i + '"]');
    var box = $("mx-detail");
    if (tr) {
      tr.classList.add("mx-open");
      var holder = el("tr", "mx-detail-row"), cell = el("td", "mx-detail-cell");
      cell.colSpan = 5 + index.behaviors.length;
      cell.appendChild(box);
      holder.appendChild(cell);
      tr.after(holder);
    }
    return chunk(n).then(function (list) { show(i, list[i - n * index.chunk] || {}); });
  }

  function pieces(list, box) {
    (list || []).forEach(function (p) {
      var marks = p[1] || "";
      if (marks === "g") {
        box.appendChild(el("span", "mk-gap", "… " + Number(p[0]).toLocaleString("en") +
          " characters not shown …"));
        return;
      }
      if (marks.indexOf("S") >= 0) {
        var stop = el("span", "mk-stop", "■ stop");
        stop.title = "the reply stopped here" + (p[2] ? " (in " + p[2] + ")" : "");
        box.appendChild(stop);
        return;
      }
      var span = el("span", marks.split("").map(function (m) { return "mk-" + m; }).join(" "),
        p[0]);
      if (marks) {
        var title = marks.split("").map(function (m) { return MARKS[m] || m; }).join("; ");
        span.title = title + (p[2] ? " (" + p[2] + ")" : "");
        span.dataset.marks = marks;
        if (p[2]) { span.dataset.key = p[2]; }
      }
      box.appendChild(span);
    });
  }

  function table(head, body, cls) {
    var t = el("table", cls), tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", "", h)); });
    t.appendChild(tr);
    body.forEach(function (cells) {
      var r = el("tr");
      cells.forEach(function (c) {
        if (c instanceof Node) { var td = el("td"); td.appendChild(c); r.appendChild(td); }
        else { r.appendChild(el("td", "", c)); }
      });
      t.appendChild(r);
    });
    return t;
  }

  function show(i, d) {
    var box = $("mx-detail");
    box.replaceChildren();
    box.hidden = false;
    box.dataset.i = String(i);
    var close = el("button", "mx-close", "close ✕");
    close.type = "button";
    close.addEventListener("click", function (ev) { ev.stopPropagation(); closeDetail(); });
    box.appendChild(close);
    box.appendChild(el("h3", "", "Sample " + label(i)));
    if (d.e) { box.appendChild(el("p", "failed", "No reply: " + d.e)); }
    var verdicts = index.behaviors.map(function (name, j) {
      var c = rows.v[i].charAt(j), info = VERDICT[c] || ["?", "?"];
      var v = el("span", "v" + (c === "-" ? "x" : c), info[0] + " " + info[1]);
      var why = (d.te && d.te[name]) ? "test error: " + d.te[name] : ((d.x && d.x[name]) || "");
      var fc = rows.f[i].charAt(j);
      var flip = fc === "-" ? "pass → fail" : fc === "+" ? "fail → pass" : "";
      return index.baseline ? [name, v, flip, why] : [name, v, why];
    });
    box.appendChild(table(index.baseline ? ["behavior", "verdict", "flip", "why"] :
      ["behavior", "verdict", "why"], verdicts, "mx-verdicts"));
    var counts = [];
    var c = d.c || {};
    ["done_reason", "eval_count", "prompt_eval_count", "prompt_chars", "cached"].forEach(
      function (k) { if (c[k] !== undefined) { counts.push(k.replace(/_/g, " ") + " " + c[k]); } });
    if (rows.len[i] !== null) { counts.push("reply chars " + rows.len[i]); }
    if (d.cc !== undefined) { counts.push("copied verbatim " + d.cc + " chars"); }
    if (d.fl && d.fl.length) { counts.push("flags " + d.fl.join(", ")); }
    box.appendChild(el("p", "mx-counts", counts.join(" · ")));
    if (d.stop) {
      box.appendChild(el("p", "mx-stopline", "■ " + (STOPS[d.stop[0]] || d.stop[0]) +
        (d.stop[1] ? " (" + d.stop[1] + ")" : "")));
    }
    var legend = el("p", "mx-legend");
    [["c", "copied verbatim"], ["x", "changed value"], ["s", "value kept"],
     ["m", "missing key"], ["e", "extra key"], ["u", "after the stop"], ["o", "prose"]]
      .forEach(function (p) { legend.appendChild(el("span", "mk-" + p[0], p[1])); });
    box.appendChild(legend);
    var side = el("div", "mx-side");
    var left = el("div"), right = el("div");
    left.appendChild(el("h4", "", "record (as sent)"));
    var rec = el("div", "mx-text mx-record");
    if (d.r) { pieces(d.r, rec); } else {
      rec.textContent = index.records ? "(no record for this sample)" :
        "(this report carries no records: schema 1)";
    }
    left.appendChild(rec);
    right.appendChild(el("h4", "", "reply"));
    var rep = el("div", "mx-text mx-reply-text");
    if (d.p) { pieces(d.p, rep); } else { rep.textContent = "(no reply)"; }
    right.appendChild(rep);
    side.appendChild(left);
    side.appendChild(right);
    box.appendChild(side);
    if (d.k) {
      var names = { same: "kept", changed: "changed", missing: "missing" };
      box.appendChild(el("h4", "", "record keys in the reply"));
      box.appendChild(table(["key", "in the reply"], d.k.map(function (k) {
        return [k[0], (names[k[1]] || k[1]) + (k[2] ? ", stops inside it" : "")];
      }).concat((d.xk || []).map(function (k) { return [k, "extra (not a record key)"]; })),
        "mx-keys"));
    }
    var m = d.m || {}, keys = Object.keys(m);
    if (keys.length) {
      box.appendChild(el("p", "note", "measures: " + keys.map(function (k) {
        return k + " " + m[k]; }).join(" · ")));
    }
    box.scrollIntoView({ block: "nearest" });
  }

  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }

  inflate(document.getElementById("mx-index").textContent).then(function (data) {
    index = data;
    rows = data.rows;
    root.hidden = false;
    ["mx-behavior", "mx-verdict", "mx-flip"].forEach(function (id) {
      if ($(id)) { $(id).addEventListener("change", filter); }
    });
    $("mx-search").addEventListener("input", debounce(filter, 150));
    $("mx-prev").addEventListener("click", function () { page -= 1; draw(); });
    $("mx-next").addEventListener("click", function () { page += 1; draw(); });
    filter();
    root.dataset.ready = "1";
  }).catch(function (err) {
    root.hidden = false;
    $("mx-status").textContent = "Could not read the embedded samples: " + err;
  });
})();
"""
