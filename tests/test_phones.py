"""The fast E.164 path must give phonenumbers' answer on every input, valid or not."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from crm.phones import UNSURE, e164_by_phonenumbers, fast_e164, to_e164

REGIONS = ("CN", "TW", "HK", "US", "GB", "DE", "CA", "JP", "IT", "RU")
TYPES = (
    phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST, phonenumbers.PhoneNumberType.VOIP,
)


def _national_numbers(region: str, rng: random.Random, mutations: int = 40) -> list[str]:
    """Valid example numbers of the region, and mutations of them that are mostly invalid."""
    examples = []
    for kind in TYPES:
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            examples.append(phonenumbers.national_significant_number(example))
    found = []
    for nsn in examples:
        found.append(nsn)
        for _ in range(mutations):
            digits = list(nsn)
            action = rng.randrange(4)
            if action == 0:  # change digits: still valid or not, depending on the plan
                for _ in range(rng.randint(1, 3)):
                    digits[rng.randrange(len(digits))] = str(rng.randrange(10))
            elif action == 1:
                del digits[rng.randrange(len(digits))]
            elif action == 2:
                digits.insert(rng.randrange(len(digits) + 1), str(rng.randrange(10)))
            else:
                digits = list(str(rng.randrange(10 ** (len(nsn) - 1), 10 ** len(nsn))))
            found.append("".join(digits))
    return found


def _written(nsn: str, region: str, rng: random.Random) -> str:
    """nsn as a person might type it: with a prefix and separators."""
    cc = phonenumbers.country_code_for_region(region)
    prefix = rng.choice(["", "", f"+{cc}", f"00{cc}", "0", f"{cc}", "+", "1", f"+{cc}0", "011"])
    digits = prefix.lstrip("+") + nsn
    out = "+" if prefix.startswith("+") else ""
    i = 0
    while i < len(digits):
        step = rng.randint(1, 4)
        out += digits[i:i + step]
        i += step
        if i < len(digits):
            out += rng.choice(["", "", " ", "-", ".", " - "])
    if rng.random() < 0.1 and len(out) > 4:
        out = f"({out[:3]}) {out[3:]}"
    return out


def _inputs(region: str) -> list[str]:
    rng = random.Random(f"phones-{region}")
    inputs = [_written(nsn, region, rng) for nsn in _national_numbers(region, rng)]
    # other countries' numbers read in this region, and junk
    for other in ("CN", "US", "GB", "HK", "TW", "DE", "FR", "SG"):
        example = phonenumbers.example_number_for_type(other, phonenumbers.PhoneNumberType.MOBILE)
        international = phonenumbers.PhoneNumberFormat.INTERNATIONAL
        inputs.append(phonenumbers.format_number(example, international))
    inputs += ["12", "123", "0000", "+0 123 4567", "++86 138 0013 8000", "138 0013 8000 ext 12",
               "１３８００１３８０００", "tel: 13800138000", "+800 1234 5678",
               "(+86) 138-0013-8000", "8613800138000", "008613800138000", "0086 0138 0013 8000",
               "+86 (0) 10 8888 8888"]
    return inputs


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_agrees_with_phonenumbers_on_valid_and_invalid_numbers(region):
    inputs = _inputs(region)
    answered = valid = 0
    for text in inputs:
        expected = e164_by_phonenumbers(text, region)
        fast = fast_e164(text, region)
        if fast is not UNSURE:
            answered += 1
            assert fast == expected, f"{text!r} in {region}: {fast!r}, phonenumbers {expected!r}"
        assert to_e164(text, region) == expected
        valid += expected is not None
    # The inputs must cover both answers, and the fast path must carry most of them.
    assert 0.1 * len(inputs) < valid < 0.9 * len(inputs)
    assert answered > 0.6 * len(inputs), f"fast path answered only {answered} of {len(inputs)}"


def test_fast_path_agrees_with_phonenumbers_in_every_region():
    disagreements = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        rng = random.Random(f"all-{region}")
        for nsn in _national_numbers(region, rng, mutations=8):
            text = _written(nsn, region, rng)
            fast = fast_e164(text, region)
            if fast is not UNSURE and fast != e164_by_phonenumbers(text, region):
                disagreements.append((region, text, fast))
    assert not disagreements


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("138 0013 8000", "CN", "+8613800138000"),
        ("+86 138-0013-8000", "CN", "+8613800138000"),
        ("0086 13800138000", "CN", "+8613800138000"),
        ("(010) 8888 8888", "CN", "+861088888888"),
        ("0912 345 678", "TW", "+886912345678"),
        ("9123 4567", "HK", "+85291234567"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("07400 123456", "GB", "+447400123456"),
        ("+1 201 555 0123", "CN", "+12015550123"),
        ("86 138 0013 8000", "CN", "+8613800138000"),
        ("1 (201) 555-0123", "US", "+12015550123"),
    ],
)
def test_common_forms_become_e164_on_the_fast_path(text, region, e164):
    assert fast_e164(text, region) == e164


@pytest.mark.parametrize(("text", "region"),
                         [("138 0013 800", "CN"), ("12345", "CN"), ("555-0123", "US")])
def test_invalid_numbers_are_none(text, region):
    assert to_e164(text, region) is None
