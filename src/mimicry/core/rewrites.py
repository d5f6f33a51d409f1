"""Is a reply's ``prompt`` value the record's request reworded? (for ``rewrites_prompt``)

Both prompts are read as lists of turns (the dataset stores a JSON list; a copy may be a Python
list, a bare string, or cut off), and each turn of the reply's prompt is classified:

``copy``
    The same text as a turn of the record's prompt (or the part of it a cut-off reply got to
    write) up to case, punctuation, symbols, whitespace, quoting and Unicode compatibility forms.
    "who made you" for "Who made you?" and "Tel Aviv" for "Tel-Aviv" are copies.
``translation``
    In another language than the record's prompt (another script, or another language's common
    words: German, French, Spanish, Italian, Portuguese, Dutch, and English itself, are told apart;
    other Latin-script languages count when their text carries none of English's common words).
    When the record asks for a translation, text in another language that asks nothing is the
    translation it asked for, an answer.
``rewrite``
    A request (a question, or a sentence opening with an interrogative, a request phrase or an
    imperative verb; or a short phrase made of the record's own content words) that is about the
    record's request: it shares a content word with one of its turns (matched by a common
    prefix of five letters, so "management" matches "managerial", or a near spelling), or it is
    a short question sharing most of its words with one.
``unrelated``
    A request that shares none of that with the record's prompt.
``answer``
    Not a request: a statement ("The best first move is the center square."), a reply that
    opens like an answer ("Yes, ...", "I was made by ...", "Sure! Here ..."), code, or a number.

The reply rewrites the prompt when at least one of its turns is a ``rewrite`` or a
``translation``. Known limits, in both directions: a paraphrase that shares no content word with
the original and is not a short question ("Should firms set quotas for women?" for "Is it right
to have a percentage of females in managerial positions?" is told by "manag..."; "Ought
businesses to cap male bosses?" is not) reads as unrelated; an unrelated request that happens to
share a content word reads as a rewrite; a translation into a Latin-script language other than
the seven above that keeps English words reads as English; a statement in another language is
taken for a translation unless the record asked for one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Literal

from rapidfuzz import fuzz

from mimicry.core.parsing import lenient_string_list, safe_literal_eval, unescape_lenient

TurnKind = Literal["copy", "translation", "rewrite", "unrelated", "answer"]
_COPY: TurnKind = "copy"
PromptKind = Literal["missing", "empty", "copy", "translation", "rewrite", "unrelated", "answer"]

#: Characters of a prompt value that are compared (a longer one is cut there).
PROMPT_MAX_CHARS: Final = 20_000
#: Turns of a prompt that are compared.
MAX_TURNS: Final = 64
#: Two words match when they share a prefix this long (or are equal, or nearly so).
STEM_PREFIX: Final = 5
#: rapidfuzz similarity (0-100) of two words of five letters or more that counts as the same word.
WORD_SIMILARITY: Final = 85
#: rapidfuzz similarity (0-100) of two words that differ by a spelling slip only.
SPELLING_SIMILARITY: Final = 80
#: A request sharing this many distinct content words with the record's other text (its
#: responses) is about the same topic...
CONTEXT_SHARED_WORDS: Final = 2
#: ...when they are at least this share of its content words (this much when it shares
#: nothing with the prompt itself).
CONTEXT_SHARED_SHARE: Final = 0.5
CONTEXT_STRICT_SHARE: Final = 2 / 3
#: A short question sharing this share of its words with a short turn of the record's prompt
#: (both at most this many words) is about it, even without a shared content word ("Who
#: created you?" for "Who made you?").
SHORT_QUESTION_WORDS: Final = 8
SHORT_QUESTION_SHARED: Final = 0.5
#: Common words of a language a text needs before it is taken for that language.
LANGUAGE_MIN_WORDS: Final = 2
#: Characters of each of the record's other texts read for its topic.
CONTEXT_MAX_CHARS: Final = 20_000
#: A phrase that neither asks nor answers is a rewrite when this share of its content words
#: come from the record's prompt (an answer brings new content).
FRAGMENT_OWN_WORDS: Final = 0.6


@dataclass(frozen=True)
class PromptComparison:
    """How a reply's prompt relates to the record's: the verdict's reason, turn by turn.

    ``kind``: the prompt as a whole (see the module docstring; ``missing`` when the reply has no
    prompt value, ``empty`` when it is blank). ``turns``: each reply turn with its kind.
    ``similarity``: the best token-set similarity (0..1) of the reply's prompt to the record's
    whole prompt or to one of its turns, kept as a metric.
    """

    kind: PromptKind
    turns: tuple[tuple[str, TurnKind], ...] = ()
    similarity: float | None = None

    @property
    def rewritten(self) -> bool:
        return self.kind in ("rewrite", "translation")

    @property
    def verbatim(self) -> bool:
        return self.kind == "copy"


def compare_prompt(
    reply_prompt: str | None, record_prompt: str, context: Sequence[str] = ()
) -> PromptComparison:
    """Classify a reply's ``prompt`` value against the record's (see the module docstring).

    ``context``: the record's other text (its responses, say): a request that shares several
    of their content words is about the same topic even when it shares none with the prompt.
    """
    if reply_prompt is None:
        return PromptComparison("missing")
    reply_turns = prompt_turns(reply_prompt)
    if not reply_turns:
        return PromptComparison("empty")
    record_turns = prompt_turns(record_prompt) or [record_prompt.strip()]
    record_keys = [_key(turn) for turn in record_turns]
    joined_record = " ".join(record_keys)
    reply_keys = [_key(turn) for turn in reply_turns]
    joined_reply = " ".join(key for key in reply_keys if key)
    similarity = _similarity(joined_reply, [joined_record, *record_keys])
    if not joined_reply:
        return PromptComparison("empty", similarity=similarity)
    if _is_copy(joined_reply, joined_record) or _near_copy(reply_keys, record_keys):
        copies = tuple((turn, _COPY) for turn in reply_turns)
        return PromptComparison("copy", copies, similarity)
    topic = _Topic(record_turns, context)
    classified: list[tuple[str, TurnKind]] = []
    for turn, key in zip(reply_turns, reply_keys, strict=True):
        if not key:
            continue
        if _is_copy(key, joined_record) or any(_near_copy([key], [other]) for other in record_keys):
            classified.append((turn, _COPY))
            continue
        rest = _after_copied_turn(turn, record_keys)
        if rest is not None:
            # a turn copied whole, then more: an answer appended to it is no rewording
            kind = _classify(rest, topic) if rest else _COPY
            classified.append((turn, "rewrite" if kind in ("rewrite", "translation") else _COPY))
            continue
        classified.append((turn, _classify(turn, topic)))
    found = [kind for _, kind in classified]
    overall: PromptKind
    if "rewrite" in found:
        overall = "rewrite"
    elif "translation" in found:
        overall = "translation"
    elif "answer" in found:
        overall = "answer"
    elif "unrelated" in found:
        overall = "unrelated"
    else:
        overall = "copy"  # every turn copies one of the record's (some dropped, reordered)
    return PromptComparison(overall, tuple(classified), similarity)


def prompt_turns(prompt: str) -> list[str]:
    """The non-blank turns of a prompt value, as written (escapes undone).

    A value that starts with ``[`` is a list of turns: read as JSON, else as a Python literal,
    else leniently (a cut-off copy, unescaped inner quotes). Anything else is one turn (a
    surrounding pair of quotes is dropped).
    """
    text = prompt.strip()[:PROMPT_MAX_CHARS]
    items: list[str]
    if text.startswith("["):
        parsed = _string_items(text)
        items = parsed if parsed is not None else lenient_string_list(text, max_items=MAX_TURNS)
    else:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        items = [unescape_lenient(text)]
    return [item.strip() for item in items[:MAX_TURNS] if item.strip()]


def _string_items(text: str) -> list[str] | None:
    value: object
    try:
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError, MemoryError):
        value = safe_literal_eval(text)
    if not isinstance(value, list | tuple):
        return None
    return [item if isinstance(item, str) else str(item) for item in value]


# -- copies ---------------------------------------------------------------------------------------


def _key(text: str) -> str:
    """Text as compared for copies: compatibility forms folded, case folded, punctuation and
    symbols turned into spaces, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if _is_mark(char) else char for char in folded)
    return " ".join(kept.split())


def _is_mark(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "PSZC" or char == "_"


def _is_copy(reply_key: str, record_key: str) -> bool:
    """The reply's text is the record's, or a part of it a copy got to write (also cut mid-word)."""
    if not reply_key:
        return False
    if reply_key in record_key:
        return True
    # a cut copy that also dropped a space or joined words ("telaviv"): compare without spaces
    squeezed = reply_key.replace(" ", "")
    return len(squeezed) >= 3 and squeezed in record_key.replace(" ", "")


def _near_copy(reply_keys: Sequence[str], record_keys: Sequence[str]) -> bool:
    """The same words in the same order but for spelling slips ("followig" / "following"), also
    as a prefix (a cut copy) of the record's words."""
    reply_words = " ".join(reply_keys).split()
    record_words = " ".join(record_keys).split()
    if not reply_words or len(reply_words) > len(record_words):
        return False
    for index, (a, b) in enumerate(zip(reply_words, record_words, strict=False)):
        last = index == len(reply_words) - 1 and len(reply_words) < len(record_words)
        if a == b or (last and b.startswith(a)) or _spelling_slip(a, b):
            continue
        return False
    return True


def _after_copied_turn(turn: str, record_keys: Sequence[str]) -> str | None:
    """What follows in ``turn`` after a whole record turn copied at its start (None when it
    does not start with one)."""
    words = list(_WORD_SPANS.finditer(turn))
    folded = [_key(match.group()) for match in words]
    for record_key in record_keys:
        record_words = record_key.split()
        size = len(record_words)
        if size < 3 or size >= len(folded):
            continue
        head = " ".join(folded[:size]).split()
        if head == record_words:
            return turn[words[size - 1].end() :].lstrip(" \t\n\"'`,.;:!?\u201d\u2019])")
    return None


def _spelling_slip(a: str, b: str) -> bool:
    if min(len(a), len(b)) < 4 or a.isdigit() or b.isdigit():
        return False
    return fuzz.ratio(a, b) >= SPELLING_SIMILARITY


def _similarity(text: str, targets: Sequence[str]) -> float | None:
    if not text:
        return None
    best = max(
        (fuzz.token_set_ratio(text[:10_000], target[:10_000]) for target in targets if target),
        default=0.0,
    )
    return round(float(best) / 100.0, 4)


# -- one turn -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topic:
    """What the record's request is about: its turns, their language, and its other text."""

    turns: Sequence[str]
    context: Sequence[str]

    @cached_property
    def language(self) -> str:
        return _language(" ".join(self.turns))

    @cached_property
    def asks_translation(self) -> bool:
        return _ASKS_TRANSLATION.search(" ".join(self.turns)) is not None

    @cached_property
    def _known(self) -> tuple[frozenset[str], frozenset[str]]:
        words: set[str] = set()
        for text in (*self.context, *self.turns):
            words.update(_content(_words(text[:CONTEXT_MAX_CHARS])))
        prefixes = {word[:STEM_PREFIX] for word in words if len(word) >= STEM_PREFIX}
        return frozenset(words), frozenset(prefixes)

    def knows(self, word: str) -> bool:
        """Whether ``word`` (or a word sharing its stem) is in the record's prompt or text."""
        words, prefixes = self._known
        if word in words or (len(word) >= STEM_PREFIX and word[:STEM_PREFIX] in prefixes):
            return True
        return len(word) >= 5 and (word[:-1] in words or word.removesuffix("es") in words)


def _classify(turn: str, topic: _Topic) -> TurnKind:
    if _looks_like_code_or_number(turn):
        return "answer"
    language = _language(turn)
    record_language = topic.language
    if language != record_language and _distinct_languages(language, record_language):
        if topic.asks_translation and not (_asks(turn, language) or _ASKS_TRANSLATION.search(turn)):
            return "answer"  # the translation the record asked for
        return "translation"
    words = _words(turn)
    related = _related(words, topic)
    if _QUESTION_MARK.search(turn):
        return "rewrite" if related else "unrelated"
    label = _LABEL.match(turn)
    if label is not None:
        # "Translate into Russian: ..." asks; after "Answer:", "Caption:" or a topic such as
        # "Rap battle:", what follows decides
        head = label.group(1)
        head_words = _words(head)
        if head.casefold() in _REQUEST_LABELS or (
            len(head_words) >= 2 and _opens_request(head_words, language)
        ):
            return "rewrite" if related else "unrelated"
        if head.casefold() in _ANSWER_LABELS:
            return "answer"
        turn = turn[label.end(1) :].lstrip(" :")
        words = _words(turn)
    if _opens_like_answer(words):
        return "answer"
    if _asks(turn, language):
        return "rewrite" if related else "unrelated"
    if _states(words):
        return "answer"
    # a phrase that neither asks nor states: a rewrite when made of the record's own words
    own = _own_share(words, topic.turns)
    return "rewrite" if related and own >= FRAGMENT_OWN_WORDS else "answer"


def _distinct_languages(a: str, b: str) -> bool:
    """Whether two language tags surely differ ("unknown" and "other-latin" are not sure)."""
    unsure = ("unknown", "other-latin")
    return a not in unsure and b not in unsure


_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?")
_WORD_SPANS = re.compile(r"[^\W_]+")
_CODE = re.compile(
    r"(?m)^\s*(?:def |class |import |from \w+ import|function |const |let |var |#include|SELECT |"
    r"public |print\(|console\.|<\w+>|\$ )|[{};]\s*$|=>|\)\s*\{"
)
_QUESTION_MARK = re.compile("[?\uff1f\u061f\u037e]")
_NUMBER_ONLY = re.compile(r"[\s\d.,+\-*/=%()$€£]+")


def _words(text: str) -> list[str]:
    """Words, case folded; number words as digits ("ten" and "10" are one word)."""
    found = (word.casefold().replace("\u2019", "'") for word in _WORD.findall(text))
    return [_NUMBER_WORDS.get(word, word) for word in found]


_NUMBER_WORDS: Final = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


def _looks_like_code_or_number(turn: str) -> bool:
    return _NUMBER_ONLY.fullmatch(turn) is not None or len(_CODE.findall(turn)) >= 2


def _asks(turn: str, language: str) -> bool:
    """A question, or a sentence that opens like a request (also after an introductory phrase:
    "Using the counts given, edit the description")."""
    if _QUESTION_MARK.search(turn):
        return True
    words = _words(turn)
    if _opens_request(words, language):
        return True
    if words and words[0] in _INTRODUCTORY and "," in turn:
        return _opens_request(_words(turn.split(",", 1)[1]), language)
    return False


def _opens_request(words: Sequence[str], language: str) -> bool:
    start = list(words[:4])
    while start and start[0] in _OPENERS:
        start = start[1:]
    if not start:
        return False
    if start[0] in _REQUEST_WORDS.get(language, _REQUEST_WORDS["en"]):
        return True
    return language == "en" and " ".join(start[:2]) in _REQUEST_PHRASES


def _opens_like_answer(words: Sequence[str]) -> bool:
    """ "Yes, ...", "I was made by ...", "Sure! Here ...", "The best move is ..."."""
    return bool(words) and words[0] in _ANSWER_OPENERS


def _states(words: Sequence[str]) -> bool:
    """A statement: it has a finite verb that claims something (is, was, has, belongs...)."""
    return any(word in _CLAIM_VERBS for word in words)


def _content(words: Iterable[str]) -> list[str]:
    return [w for w in words if w not in _STOPWORDS and w not in _GENERIC and len(w) > 1]


def _same_word(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.isdigit() or b.isdigit():
        return False
    if len(a) >= STEM_PREFIX and len(b) >= STEM_PREFIX and a[:STEM_PREFIX] == b[:STEM_PREFIX]:
        return True
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    if len(shorter) >= 4 and longer.startswith(shorter) and len(longer) - len(shorter) <= 3:
        return True  # plurals and short endings: move/moves, car/cars is below 4 on purpose
    return (
        min(len(a), len(b)) >= STEM_PREFIX
        and fuzz.ratio(a, b) >= WORD_SIMILARITY  # a typo: "followig" / "following"
    )


def _related(words: Sequence[str], topic: _Topic) -> bool:
    """About the record's request: shares two of its content words, or one that is a real part
    of it (a third of its content words, or most of the turn's own content is the record's
    topic, its responses included), or it is a short question made mostly of its words."""
    content = _content(words)
    for record_turn in topic.turns:
        record_words = _words(record_turn)
        record_content = _content(record_words)
        shared = {a for a in content if any(_same_word(a, b) for b in record_content)}
        if len(shared) >= 2:
            return True
        if len(shared) == 1 and (
            len(record_content) <= 3 * len(shared) or _shares_context(content, topic)
        ):
            return True
        if words and max(len(words), len(record_words)) <= SHORT_QUESTION_WORDS:
            common = sum(1 for w in set(words) if w in set(record_words))
            if common / len(set(words)) >= SHORT_QUESTION_SHARED and common >= 2:
                return True
    return _shares_context(content, topic, strict=True)


def _shares_context(content: Sequence[str], topic: _Topic, *, strict: bool = False) -> bool:
    """Most of the turn's content words are the record's topic (its prompt and responses)."""
    if not content or not topic.context:
        return False
    unique = set(content)
    shared = {word for word in unique if topic.knows(word)}
    share = CONTEXT_STRICT_SHARE if strict else CONTEXT_SHARED_SHARE
    return len(shared) >= CONTEXT_SHARED_WORDS and len(shared) >= share * len(unique)


def _own_share(words: Sequence[str], record_turns: Sequence[str]) -> float:
    content = _content(words)
    if not content:
        return 0.0
    record_content = [w for turn in record_turns for w in _content(_words(turn))]
    own = sum(1 for w in content if any(_same_word(w, r) for r in record_content))
    return own / len(content)


# -- languages ------------------------------------------------------------------------------------

_SCRIPTS: Final = (
    ("cyrillic", 0x0400, 0x052F),
    ("greek", 0x0370, 0x03FF),
    ("hebrew", 0x0590, 0x05FF),
    ("arabic", 0x0600, 0x06FF),
    ("devanagari", 0x0900, 0x097F),
    ("thai", 0x0E00, 0x0E7F),
    ("hangul", 0xAC00, 0xD7AF),
    ("kana", 0x3040, 0x30FF),
    ("han", 0x4E00, 0x9FFF),
)

# The most common words of each Latin-script language told apart (articles, pronouns,
# prepositions, auxiliaries, question words): enough to tell a sentence's language.
_LATIN_WORDS: Final = {
    "en": frozenset(
        "the a an is are was were be been of to in on for with and or but not it this that "
        "what who how why when where which can could would should will do does did you your i me "
        "my we our they their he she his her have has had there here from by at as about if so "
        "just some any".split()
    ),
    "de": frozenset(
        "der die das den dem des ein eine einen einem einer eines ist sind war waren wird werden "
        "und oder aber nicht kein keine keinen mit für auf von zu zum zur im in am an ich du sie "
        "er es wir ihr wer was wie warum wann wo welche welcher welches kannst können kann mir "
        "mich dich dir mein dein hat haben gibt bitte auch noch alle alles sich dass über unter "
        "nach bei aus wenn ob sehr".split()
    ),
    "fr": frozenset(
        "le la les un une des du de est sont était et ou mais ne pas avec pour sur dans je tu "
        "il elle nous vous ils elles qui que quoi comment pourquoi quand où quel quelle quels "
        "peux peut pouvez moi toi mon ton ma ta mes ce cette ces au aux sans plus très tous tout "
        "toute leur leurs se sa son par est-ce qu'il c'est j'ai".split()
    ),
    "es": frozenset(
        "el la los las un una unos unas es son era fue y o pero no con para por en de del al yo "
        "tú él ella nosotros ellos qué quién quien cómo como cuándo dónde cuál cuáles puedes "
        "puede me te mi tu se lo le les muy sin más todos todo esta este esto hay está están "
        "sobre entre".split()
    ),
    "it": frozenset(
        "il lo la i gli le un una uno è sono era e o ma non con per su in di del della dei delle "
        "che chi come perché quando dove quale quali puoi può mi ti io tu lui lei noi voi sono "
        "senza più molto tutti tutto questo questa nel nella al alla".split()
    ),
    "pt": frozenset(
        "o a os as um uma uns umas é são era foi e ou mas não com para por em de do da dos das "
        "no na nos nas que quem como quando onde qual você pode me te eu ele ela nós isso isto "
        "sem mais muito todos todo está estão sobre".split()
    ),
    "nl": frozenset(
        "de het een is zijn was en of maar niet geen met voor op in van te ik jij je hij zij "
        "wij wat wie hoe waarom wanneer waar welke kun kan mij mijn dat dit die er ook nog alle "
        "bij naar uit".split()
    ),
}
# Letters that mark a Latin-script language (one of them counts as one of its common words).
_LATIN_MARKS: Final = {
    "de": frozenset("äöüß"),
    "fr": frozenset("éèêëçàâîïôûù"),
    "es": frozenset("ñ¿¡áíóú"),
    "it": frozenset("àèéìòù"),
    "pt": frozenset("ãõçáâêóôú"),
}
_ASKS_TRANSLATION = re.compile(
    r"(?i)\btransl|\btraduc|\btradu[iz]|übersetz|\bperev|перев|翻译|翻訳|번역"
)


def _language(text: str) -> str:
    """A rough language tag: a script name, a Latin-script language code, or "unknown"."""
    counts: dict[str, int] = {}
    latin = 0
    for char in text[:2_000]:
        code = ord(char)
        if code < 0x250:
            if char.isalpha():
                latin += 1
            continue
        for name, low, high in _SCRIPTS:
            if low <= code <= high:
                counts[name] = counts.get(name, 0) + 1
                break
    if counts:
        # another script carries the sentence even beside some Latin words (a name, a quote)
        script, count = max(counts.items(), key=lambda item: item[1])
        if count * 2 >= latin:
            return "cjk" if script in ("han", "kana") else script
    if not latin:
        return "unknown"
    words = _words(text)
    scores = {lang: sum(1 for w in words if w in vocab) for lang, vocab in _LATIN_WORDS.items()}
    letters = set(text.casefold())
    for lang, marks in _LATIN_MARKS.items():
        scores[lang] += 1 if letters & marks else 0
    best = max(scores, key=lambda lang: scores[lang])
    if scores["en"] == scores[best] and scores["en"] > 0:
        return "en"
    if scores[best] < LANGUAGE_MIN_WORDS:
        # names, a lineup, code: too few common words to tell a language
        return "unknown" if scores[best] or len(words) < 4 else "other-latin"
    return best


# -- English cues ---------------------------------------------------------------------------------

_OPENERS: Final = frozenset(
    "ok okay so hey hi hello please now and but well then also alright right just oh".split()
)
_REQUEST_WORDS_EN: Final = frozenset(
    """what whats what's who whom whose why how when where which is are was were am do does did
    can could would will should shall may might must have has had isn't aren't don't doesn't
    didn't can't couldn't wouldn't shouldn't won't
    write explain tell give list describe translate create make generate compose summarize
    summarise estimate calculate compute construct correct fix rewrite rephrase provide suggest
    recommend find draft design plan imagine pretend act continue answer solve convert identify
    classify predict analyze analyse evaluate discuss outline say show name define compare
    contrast delete remove install upload download build implement code program help teach
    guide walk let lets let's consider assume suppose pick choose rate rank sort count check
    review edit improve proofread paraphrase simplify expand elaborate clarify detail detailing
    draw sketch play roleplay respond reply greet introduce talk speak chat prove derive
    demonstrate illustrate describe share offer brainstorm invent tell propose predict forecast
    estimate guess figure determine decide judge assess argue debate justify defend critique
    criticize criticise caption title label tag complete finish fill start begin stop set
    use apply run execute test debug optimize refactor format structure organize organise
    prepare cook bake travel go get take buy sell book find search look locate""".split()
)
_REQUEST_WORDS: Final = {
    "en": _REQUEST_WORDS_EN,
    "de": frozenset(
        "wer was wie warum wann wo welche welcher kannst können schreibe erkläre "
        "gib sag nenne übersetze beschreibe".split()
    ),
    "fr": frozenset(
        "qui que quoi comment pourquoi quand où quel quelle peux pouvez écris "
        "explique donne dis traduis décris est-ce".split()
    ),
    "es": frozenset(
        "qué que quién quien cómo como por cuándo dónde cuál puedes escribe "
        "explica dame di traduce describe".split()
    ),
    "it": frozenset(
        "che chi come perché quando dove quale puoi scrivi spiega dammi dimmi "
        "traduci descrivi".split()
    ),
    "pt": frozenset(
        "que quem como quando onde qual pode escreva explique diga traduza descreva".split()
    ),
    "nl": frozenset(
        "wat wie hoe waarom wanneer waar welke kun kunt schrijf leg geef vertel "
        "vertaal beschrijf".split()
    ),
}
_REQUEST_PHRASES: Final = frozenset(
    """i want i need i'd like i would i wish i'm looking i am looking you are you're
    from now in the""".split("\n")
)
_ANSWER_OPENERS: Final = frozenset(
    """yes yeah yep no nope sure certainly absolutely definitely indeed of here hello
    i i'm i've i'll my as sorry unfortunately thanks thank it it's its this that that's there
    there's they they're these those the a an in to because since although however generally
    typically usually basically actually well""".split()
)
# "Answer: ...", "Refined passage: ...": a label of at most three words, then a colon
_LABEL = re.compile(r"\s*([^\W\d_][\w'\- ]{0,30}?)\s*:\s+\S")
_REQUEST_LABELS: Final = frozenset(
    "question task prompt request instruction instructions query user q ask".split()
)
_ANSWER_LABELS: Final = frozenset(
    "answer response reply result output solution translation caption summary verdict a".split()
)
_INTRODUCTORY: Final = frozenset(
    "using given based for in with after before if when as from by considering assuming".split()
)
_CLAIM_VERBS: Final = frozenset(
    """is are was were isn't aren't wasn't weren't has have had hasn't haven't belongs belong
    means mean depends depend makes made take takes takes costs cost lies lie comes come goes
    became become becomes remains remain seems seem appears appear contains contain includes
    include refers refer allows allow requires require helps help works work tends tend
    can will would should could may might must does do did""".split()
)
_STOPWORDS: Final = _LATIN_WORDS["en"] | frozenset(
    """s t d ll m re ve it's i'm you're don't doesn't isn't aren't can't won't what's that's
    there's let's us them him his hers its ours theirs myself yourself itself than then too
    very also only really more most less much many such other another each every all both
    either neither into onto over under between through during before after above below up
    down out off again further once whether while because since until although though yet
    no nor own same few ok okay hi hello hey please thanks thank yes""".split()
)
# Words in so many requests that sharing them says nothing about the topic.
_GENERIC: Final = frozenset(
    """best good better great way ways thing things something anything everything make get
    use know like want need tell give write explain help question questions answer answers
    one two first new old time people person kind type sort lot lots bit example examples
    please fun funny short long simple easy little big well sure right wrong true false
    difference different same think say said go going come take call
    called look looking find work works show list describe create""".split()
)
