"""How much of a reply is copied verbatim from the record: the longest common substring, found
within bounded windows and a bounded search budget, so hostile replies cost no more than a few
milliseconds."""

from __future__ import annotations

from typing import Final

#: Copies are found from shared runs of this many characters...
VERBATIM_ANCHOR_CHARS: Final = 16
#: ...in the first this many characters of the reply and of the record.
VERBATIM_WINDOW_CHARS: Final = 1 << 16
#: ...with at most this many characters searched in the record, summed over all searches.
VERBATIM_SEARCH_BUDGET_CHARS: Final = 50_000_000
#: Probes are searched in the source directly while (probes x source length) stays below this.
_DIRECT_SEARCH_CHARS: Final = 8_000_000


def verbatim_share(reply: str, record_text: str) -> float | None:
    """The share of the reply copied verbatim from the record: longest common substring / length.

    None for an empty reply. The longest common substring is found from shared runs of
    :data:`VERBATIM_ANCHOR_CHARS` characters in the first :data:`VERBATIM_WINDOW_CHARS` characters
    of each text (see :func:`longest_common_substring`), so the cost is bounded whatever the
    sizes: measured 5 ms for a 1 MB reply against the largest real record (34 kB), 22 ms for the
    worst reply found (a megabyte of 16-character pieces of the record, each a hit), 14 ms for a
    1 MB reply against a 1 MB record (idle machine). The share is still taken over the whole
    reply, so a copy longer than the window counts as a lower bound.
    """
    if not reply:
        return None
    return longest_common_substring(reply, record_text) / len(reply)


def longest_common_substring(text: str, source: str) -> int:
    """The length of the longest string that occurs in both ``text`` and ``source``.

    Exact whenever that length is at least ``VERBATIM_ANCHOR_CHARS * 3 // 2 - 1`` (23) characters,
    within the windows: every 8th 16-character run of ``text`` is looked up in the set of
    ``source``'s 16-character runs; a hit is extended right by galloping ``in`` searches and left
    by up to 7 characters, and the scan resumes near the end of the match. Shorter common runs may
    be missed (0 then); a second, overlapping copy of the same region is not looked for; and the
    searches stop after :data:`VERBATIM_SEARCH_BUDGET_CHARS` characters (a lower bound then).
    Both texts shorter than the anchor are compared exhaustively.
    """
    text = text[:VERBATIM_WINDOW_CHARS]
    source = source[:VERBATIM_WINDOW_CHARS]
    width = VERBATIM_ANCHOR_CHARS
    if len(text) < width or len(source) < width:
        return _short_common_substring(text, source)
    step = width // 2
    # Each probe of the text is looked up in the source: by substring search (C speed, no set to
    # build) while the probes are few for the source's size, else in a set of its runs.
    probes = (len(text) - width) // step + 1
    runs: str | set[str] = source
    if probes * len(source) > _DIRECT_SEARCH_CHARS:
        runs = {source[i : i + width] for i in range(len(source) - width + 1)}
    searches = max(64, VERBATIM_SEARCH_BUDGET_CHARS // len(source))
    best = 0
    at = 0
    while at + width <= len(text) and searches > 0:
        if text[at : at + width] not in runs:
            at += step
            continue
        # The longest match starting at `at`: gallop up, then halve down (`in` is monotone).
        good, bad = width, len(text) - at + 1
        probe = width * 2
        while probe < bad and searches > 0:
            searches -= 1
            if text[at : at + probe] in source:
                good, probe = probe, probe * 2
            else:
                bad = probe
        while bad - good > 1 and searches > 0:
            searches -= 1
            middle = (good + bad) // 2
            if text[at : at + middle] in source:
                good = middle
            else:
                bad = middle
        end = at + good
        start = at
        while start > 0 and at - start < step - 1 and searches > 0:
            searches -= 1
            if text[start - 1 : end] not in source:
                break
            start -= 1
        best = max(best, end - start)
        at = max(at + step, end - width + 1)
    return best


def _short_common_substring(text: str, source: str) -> int:
    short, long = (text, source) if len(text) <= len(source) else (source, text)
    for length in range(len(short), 0, -1):
        if any(short[i : i + length] in long for i in range(len(short) - length + 1)):
            return length
    return 0
