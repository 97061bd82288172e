"""Tolerant phrase matching that survives recognition errors, in Chinese and English.

Text is normalised (NFKC, lower case, traditional Chinese folded to
simplified) and cut into tokens: a Chinese character is one token, a run of
Latin letters or digits is one token. Chinese characters are compared by
their toneless pinyin, because a recogniser's typical Chinese error is a
homophone: "稳赚不赔" heard as "闻传不悲" is "wen zhuan bu pei" against
"wen chuan bu bei". A phrasing matches when some window of the utterance's
tokens, of about the phrasing's length, is similar enough to it (difflib
ratio over the characters of the compared forms), so "calling from" also
matches "calling form".
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W_\u3400-\u9fff]+", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u9fff]")


@cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _sound(char: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(char, style=Style.NORMAL)[0]


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    if _HAN.search(text):
        text = _t2s().convert(text)
    return text


@dataclass(frozen=True)
class Token:
    text: str
    key: str  # what is compared: the word, or a Chinese character's pinyin


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[Token, ...]:
    return tuple(Token(t, _sound(t) if _HAN.match(t) else t) for t in _TOKEN.findall(normalise(text)))


def _display(toks: list[Token]) -> str:
    out = []
    for t in toks:
        if out and not (_HAN.match(t.text) and _HAN.match(out[-1][-1])):
            out.append(" ")
        out.append(t.text)
    return "".join(out)


@dataclass(frozen=True)
class Match:
    phrase: str
    matched: str  # the words of the utterance that matched, normalised
    ratio: float


def best_match(text: str, phrase: str, floor: float = 0.0) -> Match | None:
    """The window of text most similar to phrase, or None when none reaches floor (or either has no tokens)."""
    said, wanted = tokens(text), tokens(phrase)
    if not said or not wanted:
        return None
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(" ".join(t.key for t in wanted))  # difflib caches its analysis of seq2
    best: Match | None = None
    n = len(wanted)
    for size in sorted({max(1, n - 1), n, n + 1}):
        for i in range(max(1, len(said) - size + 1)):
            window = said[i : i + size]
            matcher.set_seq1(" ".join(t.key for t in window))
            bar = max(floor, best.ratio if best else 0.0)
            # The quick ratios are cheap upper bounds: most windows are rejected without the full comparison.
            if matcher.real_quick_ratio() < bar or matcher.quick_ratio() < bar:
                continue
            ratio = matcher.ratio()
            if ratio >= bar and (best is None or ratio > best.ratio):
                best = Match(phrase, _display(list(window)), ratio)
    return best


def find_phrase(text: str, phrases: list[str], threshold: float) -> Match | None:
    """The best-matching phrasing at or above threshold, or None."""
    matches = [m for p in phrases if (m := best_match(text, p, threshold))]
    return max(matches, key=lambda m: m.ratio, default=None)
