"""Phone numbers to E.164, answering exactly as `phonenumbers` would, but fast.

`phonenumbers.parse` + `is_valid_number` costs about 70 µs a number, which
alone would make a 100,000-row lead import take seconds. Almost every number
in a lead list is plain digits with spaces, dashes, dots or parentheses, and
perhaps +CC, 00CC or a national prefix. For those, `to_e164` replays the steps
of `phonenumbers.parse` and `is_valid_number` (phonenumberutil.py) with
regexes compiled once from the same metadata. Whenever a step would take a
branch the fast path does not replay (letters, extensions, full-width digits,
a number starting with the region's own country code, prefix transform
rules...), it returns UNSURE and `phonenumbers` itself decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

UNSURE = object()  # the fast path's "ask phonenumbers"

_MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_SEPARATORS = str.maketrans("", "", " -.()")
# Number types _number_type_helper tries; a number is valid when it matches one.
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
          "pager", "uan", "voicemail", "fixed_line")


def e164_by_phonenumbers(text: str, region: str) -> str | None:
    """The reference answer: E.164 if phonenumbers parses text in region as a valid number."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_e164(text: str, region: str) -> str | None:
    """E.164 form of text read as a number of region, or None when it is not a valid number."""
    answer = fast_e164(text, region)
    if answer is UNSURE:
        return e164_by_phonenumbers(text, region)
    return answer


def _pattern(desc) -> re.Pattern | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return re.compile(desc.national_number_pattern)


@dataclass(frozen=True)
class _Validity:
    """_number_type_helper(nsn) != UNKNOWN for one region, as two regex matches."""

    general: re.Pattern | None
    # length -> alternation of the type patterns that allow that length
    types_by_length: dict[int, re.Pattern]

    def __call__(self, nsn: str) -> bool:
        types = self.types_by_length.get(len(nsn))
        return (types is not None and self.general.fullmatch(nsn) is not None
                and types.fullmatch(nsn) is not None)


def _validity(md) -> _Validity:
    general = _pattern(md.general_desc)
    descs = [getattr(md, name) for name in _TYPES]
    if not md.same_mobile_and_fixed_line_pattern:
        descs.append(md.mobile)
    by_length = {}
    general_lengths = md.general_desc.possible_length
    for length in range(1, _MAX_NSN + 1):
        if general is None or (general_lengths and length not in general_lengths):
            continue
        alternatives = [
            d.national_number_pattern for d in descs
            if _pattern(d) is not None and (not d.possible_length or length in d.possible_length)
        ]
        if alternatives:
            by_length[length] = re.compile("|".join(f"(?:{a})" for a in alternatives))
    return _Validity(general, by_length)


@cache
def _is_valid_for_calling_code(cc: int):
    """is_valid_number for numbers of calling code cc: region_code_for_number, then that region."""
    plans = []
    for region in COUNTRY_CODE_TO_REGION_CODE[cc]:
        md = PhoneMetadata.metadata_for_region(region, None)
        if md is not None:
            leading = re.compile(md.leading_digits) if md.leading_digits is not None else None
            plans.append((leading, _validity(md)))
    if len(plans) == 1:
        return plans[0][1]

    def is_valid(nsn: str) -> bool:
        for leading, valid in plans:
            if leading is not None:
                if leading.match(nsn):
                    return valid(nsn)
            elif valid(nsn):
                return True
        return False

    return is_valid


@dataclass(frozen=True)
class _Parsing:
    """What parse() uses from one region's metadata."""

    country_code: int
    idd: re.Pattern | None
    national_prefix: re.Pattern | None
    has_transform_rule: bool
    general: re.Pattern | None
    lengths: tuple[int, ...]
    local_only_lengths: tuple[int, ...]
    country_code_text: str

    def strip_prefix(self, nat: str):
        """_maybe_strip_national_prefix_carrier_code."""
        m = self.national_prefix.match(nat) if self.national_prefix is not None else None
        if m is None:
            return nat
        if self.has_transform_rule and (not m.groups() or m.groups()[-1] is not None):
            return UNSURE
        rest = nat[m.end():]
        if (self.general is not None and self.general.fullmatch(nat)
                and not self.general.fullmatch(rest)):
            return nat
        return rest

    def strip_national_prefix(self, nat: str):
        """strip_prefix, kept only when parse()'s length check on the result passes."""
        rest = self.strip_prefix(nat)
        if rest is UNSURE or rest == nat:
            return rest
        if not self.lengths:
            return UNSURE
        n = len(rest)
        # _test_number_length is IS_POSSIBLE or TOO_LONG: only then is the prefix dropped
        if n in self.local_only_lengths or not (n in self.lengths or n > self.lengths[-1]):
            return nat
        return rest

    def too_long(self, nat: str) -> bool:
        """_test_number_length(nat) == TOO_LONG."""
        n = len(nat)
        return n not in self.local_only_lengths and n > self.lengths[-1]


@cache
def _parsing(region: str) -> _Parsing | None:
    md = PhoneMetadata.metadata_for_region(region, None)
    if md is None:
        return None
    return _Parsing(
        country_code=md.country_code,
        idd=re.compile(md.international_prefix) if md.international_prefix else None,
        national_prefix=(re.compile(md.national_prefix_for_parsing)
                         if md.national_prefix_for_parsing else None),
        has_transform_rule=bool(md.national_prefix_transform_rule),
        general=_pattern(md.general_desc),
        lengths=tuple(md.general_desc.possible_length),
        local_only_lengths=tuple(md.general_desc.possible_length_local_only),
        country_code_text=str(md.country_code),
    )


def _split_country_code(digits: str) -> tuple[int, str] | None:
    if digits[0] == "0":
        return None
    for size in (1, 2, 3):
        cc = int(digits[:size])
        if cc in COUNTRY_CODE_TO_REGION_CODE:
            return cc, digits[size:]
    return None


def fast_e164(text: str, region: str):
    """E.164, None (not a valid number) or UNSURE (not a form this path replays)."""
    digits = text if text.isdigit() else text.translate(_SEPARATORS)
    # True once a calling code is read from the number (+CC, IDD CC, or the region's own CC)
    from_number = digits.startswith("+")
    if from_number:
        digits = digits[1:]
    if not (digits.isascii() and digits.isdigit()) or len(digits) < 4 or len(text) > 100:
        return UNSURE
    home = _parsing(region)
    if home is None:
        return UNSURE
    if not from_number and home.idd is not None:
        m = home.idd.match(digits)
        if m and digits[m.end():m.end() + 1] != "0":
            digits, from_number = digits[m.end():], True
    if from_number:
        if len(digits) <= 2:
            return UNSURE
        split = _split_country_code(digits)
        if split is None:
            return UNSURE
        cc, nat = split
    else:
        cc, nat = home.country_code, digits
        prefix = home.country_code_text
        if nat.startswith(prefix):
            # The region's own calling code without + or IDD ("86 138..."): dropped when the
            # rest reads better as a national number, or the whole is too long for one.
            rest = home.strip_prefix(nat[len(prefix):])
            if rest is UNSURE or home.general is None or not home.lengths:
                return UNSURE
            if ((not home.general.fullmatch(nat) and home.general.fullmatch(rest))
                    or home.too_long(nat)):
                nat, from_number = rest, True
    if from_number:  # parse() then reads the rest with the calling code's main region
        number_region = COUNTRY_CODE_TO_REGION_CODE[cc][0]
        parsing = home if number_region == region else _parsing(number_region)
        if parsing is None:  # non-geographic calling codes (region "001")
            return UNSURE
    else:
        parsing = home
    if len(nat) < 2:
        return UNSURE
    nat = parsing.strip_national_prefix(nat)
    if nat is UNSURE or len(nat) > _MAX_NSN or len(nat) < 2:
        return UNSURE
    if _is_valid_for_calling_code(cc)(nat):
        return f"+{cc}{nat}"
    return None
