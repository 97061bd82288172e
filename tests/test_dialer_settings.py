"""The [dialer] settings are checked at start, naming the key."""

import pytest

from telesales.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"TELESALES_DIALER_CLAIM_MINUTES": "0"}, "dialer.claim_minutes"),
        ({"TELESALES_DIALER_SKIP_MINUTES": "-5"}, "dialer.skip_minutes"),
        ({"TELESALES_DIALER_PAUSE_REASONS": ""}, "dialer.pause_reasons"),
        ({"TELESALES_DIALER_DIAL_URI": "tel:{number}"}, "dialer.dial_uri"),
        ({"TELESALES_DIALER_DIAL_URI": "sip:trunk.example"}, "dialer.dial_uri"),
        ({"TELESALES_DIALER_LINE_TEST_URI": "echo@trunk"}, "dialer.line_test_uri"),
    ],
)
def test_a_bad_dialer_setting_names_the_key(environ, key):
    with pytest.raises(SettingsError, match=f"^{key}"):
        load_settings(environ=environ)


def test_the_defaults_dial_no_sip_uri_and_offer_pause_reasons():
    s = load_settings(environ={})
    assert s.dialer.dial_uri == "" and "lunch" in s.dialer.pause_reasons
