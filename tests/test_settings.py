"""Settings: defaults, a user file, TELESALES_* variables, and errors that name the key."""

import subprocess
import sys

import pytest

from telesales.settings import SettingsError, load_settings


def test_defaults_give_port_8080_and_embedded_database():
    s = load_settings(environ={})
    assert s.http.port == 8080
    assert s.database.url == ""
    assert s.data_dir.name == "var"


def test_environment_overrides_file_which_overrides_defaults(tmp_path):
    user = tmp_path / "site.toml"
    user.write_text('data_dir = "/srv/ts"\n[http]\nport = 9000\nhost = "0.0.0.0"\n')
    s = load_settings(user, environ={"TELESALES_HTTP_PORT": "9100",
                                     "TELESALES_DATABASE_URL": "postgresql://db/x"})
    assert s.http.port == 9100 and s.http.host == "0.0.0.0"
    assert str(s.data_dir) == "/srv/ts"
    assert s.database.url == "postgresql://db/x"


def test_list_settings_come_comma_separated_from_the_environment():
    s = load_settings(environ={"TELESALES_CRM_DEPARTMENTS": "sales, logistics"})
    assert s.crm.departments == ["sales", "logistics"]


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"TELESALES_HTTP_PORT": "eighty"}, "http.port"),
        ({"TELESALES_HTTP_PORT": "70000"}, "http.port"),
        ({"TELESALES_HTTP_SECURE_COOKIES": "maybe"}, "http.secure_cookies"),
        ({"TELESALES_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"TELESALES_CRM_DEFAULT_REGION": "XX"}, "crm.default_region"),
        ({"TELESALES_CRM_DEFAULT_TIME_ZONE": "Mars/Olympus"}, "crm.default_time_zone"),
        ({"TELESALES_LOG_LEVEL": "LOUD"}, "log.level"),
        ({"TELESALES_LEAD_IMPORT_REQUIRED_FIELDS": "phone,nmae"}, "lead_import.required_fields"),
    ],
)
def test_invalid_value_names_the_key(environ, key):
    with pytest.raises(SettingsError, match=f"^{key}"):
        load_settings(environ=environ)


def test_unknown_key_in_user_file_is_an_error_not_ignored(tmp_path):
    user = tmp_path / "site.toml"
    user.write_text("[http]\nprot = 9000\n")
    with pytest.raises(SettingsError, match=r"http\.prot .*unknown setting"):
        load_settings(user, environ={})


def test_cli_stops_at_start_with_the_key_named():
    result = subprocess.run(
        [sys.executable, "-m", "telesales", "migrate"],
        env={"TELESALES_HTTP_PORT": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "http.port" in result.stderr and "TELESALES_HTTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr
