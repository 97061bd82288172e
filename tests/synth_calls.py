"""Synthetic stereo call recordings with known scripts, spoken by espeak-ng and resampled by sox.

Each line of a script is placed on its party's channel (left = agent, right =
customer) at a known time: `gap` seconds after the previous line ends, or
before it ends when negative (talking over). Rendered files are cached by a
hash of the script and the voices, so a test session synthesises each call
once per machine.

`CALLS` lists the calls and, for each, the sales-scorecard checks it is meant
to fail; every other check is meant to pass (or not apply, for the SALE-only
checks on other dispositions).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

RATE = 16000
VOICES = {
    ("en", "agent"): "en-us+f3",
    ("en", "customer"): "en-gb",
    # espeak-ng's cmn voice reads many characters as English letters and digits; its pinyin
    # voice pronounces tone-numbered pinyin properly, so Chinese lines are spoken from `say`.
    ("zh", "agent"): "cmn-latn-pinyin+f3",
    ("zh", "customer"): "cmn-latn-pinyin",
}
SPEED = {"en": "165", "zh": "140"}


@dataclass(frozen=True)
class Line:
    speaker: str  # "agent" or "customer"
    text: str
    gap: float = 0.7  # seconds after the previous line ends; negative: starts before it ends
    say: str = ""  # what espeak-ng speaks when not the text itself (pinyin for Chinese)


@dataclass(frozen=True)
class SynthCall:
    name: str
    lines: tuple[Line, ...]
    disposition: str | None = "SALE"
    language: str = "en"
    expected_failures: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class PlacedLine:
    speaker: str
    text: str
    start: float
    end: float


def speak(text: str, voice: str, speed: str, folder: Path) -> np.ndarray:
    """int16 mono samples at RATE of espeak-ng saying text."""
    raw, out = folder / "raw.wav", folder / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(out)], check=True)
    with wave.open(str(out), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def write_wav(path: Path, channels: list[np.ndarray], rate: int = RATE) -> None:
    length = max(len(c) for c in channels)
    frames = np.zeros((length, len(channels)), dtype="<i2")
    for i, c in enumerate(channels):
        frames[: len(c), i] = c
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def render(call: SynthCall, path: Path) -> list[PlacedLine]:
    """Write the call as a stereo WAV at path; return where each line landed."""
    placed, cursor = [], 1.0  # a second of ringing before the first word
    parts: list[tuple[int, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for line in call.lines:
            voice = VOICES[(call.language, line.speaker)]
            audio = speak(line.say or line.text, voice, SPEED[call.language], Path(tmp))
            start = max(0.0, cursor + line.gap) if placed else cursor
            end = start + len(audio) / RATE
            placed.append(PlacedLine(line.speaker, line.text, start, end))
            parts.append((0 if line.speaker == "agent" else 1, int(start * RATE), audio))
            cursor = max(cursor, end) if line.gap < 0 else end
    length = int((max(p.end for p in placed) + 1.0) * RATE)
    channels = [np.zeros(length, dtype=np.int16), np.zeros(length, dtype=np.int16)]
    for channel, offset, audio in parts:
        region = channels[channel][offset : offset + len(audio)]
        region[:] = np.clip(region.astype(np.int32) + audio[: len(region)], -32768, 32767)
    write_wav(path, channels)
    return placed


def _key(call: SynthCall) -> str:
    blob = json.dumps(
        [asdict(line) for line in call.lines] + [call.language, sorted(VOICES.items()), SPEED], default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rendered(call: SynthCall, cache: Path) -> tuple[Path, list[PlacedLine]]:
    """The call's WAV in cache (rendered on first use) and its line timings."""
    cache.mkdir(parents=True, exist_ok=True)
    wav, meta = cache / f"{call.name}-{_key(call)}.wav", cache / f"{call.name}-{_key(call)}.json"
    if not (wav.exists() and meta.exists()):
        placed = render(call, wav)
        meta.write_text(json.dumps([asdict(p) for p in placed]))
    return wav, [PlacedLine(**p) for p in json.loads(meta.read_text())]


# --- the scripts ------------------------------------------------------------

A, C = "agent", "customer"

GREETING = Line(A, "Hello, good morning!")
WHO = Line(C, "Hi. Yes, who is calling please?")
INTRO = Line(A, "My name is Emma, and I am calling from Sunrise Solar.")
DISCLOSURE = Line(A, "Before we start, this call is recorded for quality and training purposes.", 0.4)
OK = Line(C, "Okay, that is fine with me.")
NEEDS = Line(A, "What are you looking for in a new energy plan?")
ANSWER = Line(C, "Well, my electricity bills are far too high, and I want something cheaper for my house.")
PITCH = Line(A, "Our solar panels can cut your monthly bill by about thirty percent.")
BUY = Line(C, "That sounds good to me. I think I will take the basic package then.")
PRICE = Line(A, "Great. The total price is four thousand nine hundred dollars.")
DELIVERY = Line(A, "We will deliver and install the panels next Tuesday morning.", 0.4)
PAYMENT = Line(A, "You can pay by bank transfer when the work is done.", 0.4)
AGREE = Line(C, "Perfect. That all works for me, thanks for explaining it so clearly.")
CLOSING = Line(A, "Thank you for your time. Have a great day, goodbye!")
BYE = Line(C, "Bye now.")

SALE = (GREETING, WHO, INTRO, DISCLOSURE, OK, NEEDS, ANSWER, PITCH, BUY, PRICE, DELIVERY, PAYMENT, AGREE, CLOSING, BYE)


def _without(lines: tuple[Line, ...], *drop: Line) -> tuple[Line, ...]:
    return tuple(line for line in lines if line not in drop)


def _swap(lines: tuple[Line, ...], old: Line, new: Line) -> tuple[Line, ...]:
    return tuple(new if line == old else line for line in lines)


CALLBACK_LINES = (
    GREETING,
    WHO,
    INTRO,
    DISCLOSURE,
    OK,
    NEEDS,
    ANSWER,
    PITCH,
    Line(C, "Interesting. I need to talk to my wife first, could you call me back on Friday?"),
    Line(A, "Of course, I will call you back on Friday afternoon."),
    Line(C, "Thanks, that would be great."),
    CLOSING,
    BYE,
)

TALK_OVER = tuple(
    _swap(
        _swap(
            _swap(SALE, PITCH, Line(A, "Our solar panels can cut your monthly bill by about thirty percent.", -2.5)),
            PRICE,
            Line(A, "Great. The total price is four thousand nine hundred dollars.", -2.5),
        ),
        CLOSING,
        Line(A, "Thank you for your time. Have a great day, goodbye!", -2.5),
    )
)

MONOLOGUE = (
    GREETING,
    WHO,
    INTRO,
    DISCLOSURE,
    OK,
    NEEDS,
    Line(C, "Cheaper power."),
    Line(
        A,
        "Let me tell you everything about our company. We have been installing solar panels for twenty years "
        "in every city of the country, and our engineers are the best trained in the whole industry.",
    ),
    Line(
        A,
        "Our panels are made in our own factory, they last for thirty years, and they work even on cloudy days "
        "because of a special coating that we developed ourselves over many years of research.",
        0.4,
    ),
    Line(
        A,
        "Most of our customers save a third of their bill in the first year, and many of them tell their "
        "neighbours, which is why we grow so fast, and why we can offer such good service to everyone.",
        0.4,
    ),
    Line(C, "Okay."),
    CLOSING,
    BYE,
)

RUDE_END = _without(SALE, CLOSING, BYE) + (Line(A, "Right, whatever. I have other calls to make."),)

# Kept short: the agent's speech fits one 30 s Whisper window. Whisper base on espeak-ng's
# Mandarin falls into repetition loops in a second window, which the guards then drop.
ZH_SALE = (
    Line(A, "您好！", say="nin2 hao3!"),
    Line(C, "你好，请问是哪位？", say="ni3 hao3, qing3 wen4 shi4 na3 wei4?"),
    Line(
        A,
        "我是小王，来自阳光太阳能公司。",
        say="wo3 shi4 xiao3 wang2, lai2 zi4 yang2 guang1 tai4 yang2 neng2 gong1 si1.",
    ),
    Line(A, "本次通话将被录音。", 0.4, say="ben3 ci4 tong1 hua4 jiang1 bei4 lu4 yin1."),
    Line(C, "好的，没问题。", say="hao3 de5, mei2 wen4 ti2."),
    Line(A, "请问您有什么需求？", say="qing3 wen4 nin2 you3 shen2 me5 xu1 qiu2?"),
    Line(
        C, "我家的电费太贵了，想省一点钱。", say="wo3 jia1 de5 dian4 fei4 tai4 gui4 le5, xiang3 sheng3 yi4 dian3 qian2."
    ),
    Line(A, "我们的太阳能板很好。", say="wo3 men5 de5 tai4 yang2 neng2 ban3 hen3 hao3."),
    Line(C, "听起来不错，我要买。", say="ting1 qi3 lai2 bu2 cuo4, wo3 yao4 mai3."),
    Line(A, "总价是四千九百元。", say="zong3 jia4 shi4 si4 qian1 jiu3 bai3 yuan2."),
    Line(A, "下周二送货。", 0.4, say="xia4 zhou1 er4 song4 huo4."),
    Line(A, "您可以银行转账付款。", 0.4, say="nin2 ke3 yi3 yin2 hang2 zhuan3 zhang4 fu4 kuan3."),
    Line(C, "好的。", say="hao3 de5."),
    Line(A, "谢谢您，再见！", say="xie4 xie4 nin2, zai4 jian4!"),
    Line(C, "再见。", say="zai4 jian4."),
)
ZH_FORBIDDEN = Line(
    A, "这个产品保证收益，稳赚不赔。", say="zhe4 ge4 chan3 pin3 bao3 zheng4 shou1 yi4, wen3 zhuan4 bu4 pei2."
)

CALLS = (
    SynthCall("good_sale", SALE),
    SynthCall("good_callback", CALLBACK_LINES, disposition="CALLBACK"),
    SynthCall("no_greeting", _without(SALE, GREETING), expected_failures=frozenset({"greeting"})),
    SynthCall(
        "no_introduction",
        _swap(SALE, INTRO, Line(A, "Do you have a minute to talk about your electricity bill?")),
        expected_failures=frozenset({"self_introduction"}),
    ),
    SynthCall("no_disclosure", _without(SALE, DISCLOSURE), expected_failures=frozenset({"recording_disclosure"})),
    SynthCall(
        "no_needs_question",
        _swap(_without(SALE, ANSWER), NEEDS, Line(A, "Let me tell you about our new offer.")),
        expected_failures=frozenset({"needs_question"}),
    ),
    SynthCall(
        "forbidden_guaranteed",
        _swap(SALE, PITCH, Line(A, "Our panels give you guaranteed returns, with no risk at all.")),
        expected_failures=frozenset({"no_forbidden_phrases"}),
    ),
    SynthCall(
        "dead_air",
        _swap(SALE, PRICE, replace(PRICE, gap=10.5)),
        expected_failures=frozenset({"dead_air"}),
    ),
    SynthCall("talk_over", TALK_OVER, expected_failures=frozenset({"overtalk"})),
    SynthCall("monologue", MONOLOGUE, disposition="CALLBACK", expected_failures=frozenset({"agent_talk_ratio"})),
    SynthCall("rude_ending", RUDE_END, expected_failures=frozenset({"polite_closing"})),
    SynthCall("sale_without_price", _without(SALE, PRICE), expected_failures=frozenset({"price_confirmed"})),
    SynthCall("sale_without_delivery", _without(SALE, DELIVERY), expected_failures=frozenset({"delivery_confirmed"})),
    SynthCall("sale_without_payment", _without(SALE, PAYMENT), expected_failures=frozenset({"payment_confirmed"})),
    SynthCall("good_sale_zh", ZH_SALE, language="zh"),
    SynthCall(
        "forbidden_zh",
        _swap(ZH_SALE, ZH_SALE[7], ZH_FORBIDDEN),
        language="zh",
        expected_failures=frozenset({"no_forbidden_phrases"}),
    ),
)
