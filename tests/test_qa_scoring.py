"""Scorecards and tolerant phrase matching over hand-written transcripts: no audio, no model."""

from __future__ import annotations

import pytest

from qa.matching import best_match, find_phrase, normalise
from qa.metrics import talk_metrics
from qa.scorecard import ScorecardError, load_scorecard, parse_scorecard
from qa.scoring import Call, score_call
from qa.segments import Span, TranscriptSegment
from telesales.settings import CONFIG_DIR

SALES_CHECKS = [
    "greeting",
    "self_introduction",
    "recording_disclosure",
    "needs_question",
    "no_forbidden_phrases",
    "price_confirmed",
    "delivery_confirmed",
    "payment_confirmed",
    "dead_air",
    "overtalk",
    "agent_talk_ratio",
    "polite_closing",
]


def seg(start, speaker, text, length=3.0):
    return TranscriptSegment(start, start + length, speaker, text, 0.9)


def call_of(*segments, disposition="SALE"):
    agent = [Span(s.start, s.end) for s in segments if s.speaker == "agent"]
    customer = [Span(s.start, s.end) for s in segments if s.speaker == "customer"]
    return Call(
        transcript=tuple(segments),
        metrics=talk_metrics(agent, customer, list(segments)),
        speech_start=min(s.start for s in segments),
        speech_end=max(s.end for s in segments),
        disposition=disposition,
    )


GOOD = [
    seg(0, "agent", "Good afternoon!"),
    seg(3.5, "customer", "Hello?"),
    seg(7, "agent", "This is Li Wei calling from Sunrise Solar. This call is recorded for quality."),
    seg(11, "customer", "Okay."),
    seg(15, "agent", "What matters most to you in an energy plan?"),
    seg(19, "customer", "Saving money on my bills, really, and a quick installation."),
    seg(23, "agent", "The price is 4900 dollars, we will deliver on Monday, and you can pay by credit card."),
    seg(27, "customer", "Fine, I'll take it. Thank you."),
    seg(31, "agent", "Thank you, goodbye!"),
]


@pytest.fixture(scope="module")
def sales():
    return load_scorecard("sales", CONFIG_DIR)


def results(scorecard, call):
    return {c.id: c for c in score_call(scorecard, call).checks}


def test_the_sales_scorecard_has_exactly_the_agreed_checks(sales):
    assert [c.id for c in sales.checks] == SALES_CHECKS
    assert set(sales.categories) == {"attitude", "communication", "problem_solving", "compliance"}


def test_the_service_scorecard_loads():
    service = load_scorecard("service", CONFIG_DIR)
    assert len(service.checks) == 6


def test_a_call_that_does_everything_scores_100_with_evidence_on_every_check(sales):
    result = score_call(sales, call_of(*GOOD))
    assert result.score == 100
    assert all(c.passed for c in result.checks)
    assert all(c.evidence for c in result.checks)


def test_a_greeting_after_the_window_does_not_count(sales):
    late = [seg(0, "agent", "Sunrise Solar, this is Li Wei calling from Sunrise Solar."), seg(40, "agent", "Hello!")]
    check = results(sales, call_of(*late))["greeting"]
    assert check.passed is False
    assert "first 15 s" in check.evidence[-1]["missing"]


def test_a_phrase_said_by_the_customer_does_not_count_for_the_agent(sales):
    call = call_of(seg(0, "customer", "Good morning!"), seg(4, "agent", "Sunrise Solar."))
    assert results(sales, call)["greeting"].passed is False


def test_a_forbidden_phrase_fails_the_check_with_its_time_and_text(sales):
    call = call_of(*GOOD, seg(35, "agent", "And it is guaranteed returns, no risk at all."))
    check = results(sales, call)["no_forbidden_phrases"]
    assert check.passed is False
    assert check.evidence[0]["start"] == 35
    assert "guaranteed" in check.evidence[0]["text"]


def test_forbidden_chinese_phrases_are_caught_in_traditional_characters_and_as_homophones(sales):
    for text in ("這個產品保證收益", "这个产品闻传不悲"):  # 稳赚不赔 heard as homophones
        check = results(sales, call_of(*GOOD, seg(35, "agent", text)))["no_forbidden_phrases"]
        assert check.passed is False, text


def test_sale_only_checks_do_not_apply_to_other_dispositions(sales):
    checks = results(sales, call_of(*GOOD, disposition="CALLBACK"))
    assert checks["price_confirmed"].passed is None
    assert checks["price_confirmed"].evidence[0]["reason"].startswith("applies to disposition SALE")
    assert checks["greeting"].passed is True


def test_category_scores_weigh_checks_and_skip_what_does_not_apply(sales):
    without_price = [s for s in GOOD if "price" not in s.text] + [seg(23, "agent", "We deliver Monday, pay by card.")]
    result = score_call(sales, call_of(*without_price))
    assert result.categories["problem_solving"] == pytest.approx(75.0)
    assert result.score == pytest.approx((100 + 100 + 75 + 100) / 4, abs=0.05)


def test_a_call_with_no_speech_is_unscorable(sales):
    call = Call(transcript=(), metrics=talk_metrics([], [], []), speech_start=None, speech_end=None)
    result = score_call(sales, call)
    assert result.score is None
    assert all(c.passed is None for c in result.checks)


def test_metric_checks_report_the_measured_value(sales):
    long_gap = [*GOOD[:4], *[seg(s.start + 12, s.speaker, s.text) for s in GOOD[4:]]]
    check = results(sales, call_of(*long_gap))["dead_air"]
    assert check.passed is False
    assert check.evidence[0] == {"metric": "longest_silence_s", "value": pytest.approx(13.0), "min": None, "max": 8.0}


def test_matching_survives_english_recognition_errors():
    assert find_phrase("You can pay my bank transfer", ["pay by bank transfer"], 0.8) is not None
    assert find_phrase("I am calling form Sunrise", ["calling from"], 0.8) is not None
    assert find_phrase("Do you have a minute to talk about your bill?", ["calling from"], 0.8) is None


def test_matching_compares_chinese_by_sound_and_folds_traditional_characters():
    assert normalise("保證收益") == "保证收益"
    assert best_match("这个肯定保证说意", "保证收益").ratio > 0.9
    assert find_phrase("今天天气很好", ["保证收益", "稳赚不赔"], 0.8) is None


@pytest.mark.parametrize(
    "body, message",
    [
        ('[categories.a]\nweight = 1\n[[checks]]\nid = "x"\ncategory = "a"\nkind = "phrase_presnt"', "kind must"),
        ('[categories.a]\nweight = 1\n[[checks]]\nid = "x"\ncategory = "b"\nkind = "metric"', "category 'b'"),
        (
            '[categories.a]\nweight = 1\n[[checks]]\nid = "x"\ncategory = "a"\nkind = "metric"\nbounds.talk = {max=1}',
            "unknown metric 'talk'",
        ),
        ('[categories.a]\nweight = 1\n[[checks]]\nid = "x"\ncategory = "a"\nkind = "phrase_absent"', "needs `phrases`"),
    ],
)
def test_a_broken_scorecard_is_rejected_naming_the_check(body, message):
    with pytest.raises(ScorecardError, match=message):
        parse_scorecard("broken", body)


def test_an_unknown_scorecard_name_lists_the_known_ones():
    with pytest.raises(ScorecardError, match="known: sales, service"):
        load_scorecard("salse", CONFIG_DIR)
