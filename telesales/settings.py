"""Settings: config/default.toml, then a user TOML file, then TELESALES_* variables.

The default file is the schema: every key a user may set exists there, and its
default value fixes the type. Unknown keys and values of the wrong type stop
start-up with a message naming the key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import phonenumbers

from crm.lead_files import FIELDS as LEAD_FIELDS

CONFIG_DIR = Path(os.environ.get("TELESALES_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))


class SettingsError(ValueError):
    """A setting is unknown or has a value that cannot be used."""


def _env_name(section: str | None, key: str) -> str:
    parts = ["TELESALES", section, key] if section else ["TELESALES", key]
    return "_".join(parts).upper()


def coerce(name: str, default: Any, value: Any, origin: str) -> Any:
    """Convert value to the type of default; strings from the environment are parsed."""
    where = f"{name} (from {origin})"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise SettingsError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, list):
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where}: expected a list of strings, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    raise SettingsError(f"{where}: unsupported setting type")


def _check_ranges(s: dict[str, Any]) -> None:
    """Checks beyond the type: the value must be usable."""

    def fail(key: str, message: str) -> None:
        raise SettingsError(f"{key}: {message}")

    if not 1 <= s["http"]["port"] <= 65535:
        fail("http.port", f"must be between 1 and 65535, got {s['http']['port']}")
    if s["database"]["pool_min"] < 1 or s["database"]["pool_max"] < s["database"]["pool_min"]:
        fail("database.pool_max", "pool bounds must satisfy 1 <= pool_min <= pool_max")
    url = s["database"]["url"]
    if url and not url.startswith(("postgresql://", "postgres://")):
        fail("database.url", f"must start with postgresql://, got {url!r}")
    if s["log"]["level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("log.level", f"must be DEBUG, INFO, WARNING or ERROR, got {s['log']['level']!r}")
    if s["log"]["format"] not in ("json", "text"):
        fail("log.format", f"must be json or text, got {s['log']['format']!r}")
    region = s["crm"]["default_region"]
    if region not in phonenumbers.SUPPORTED_REGIONS:
        fail("crm.default_region", f"unknown region {region!r}; use an ISO 3166 code like CN, TW, US")
    try:
        zoneinfo.ZoneInfo(s["crm"]["default_time_zone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail("crm.default_time_zone", f"unknown time zone {s['crm']['default_time_zone']!r}")
    if len(s["crm"]["default_currency"]) != 3:
        fail("crm.default_currency", "must be a 3-letter ISO 4217 code")
    unknown = set(s["lead_import"]["required_fields"]) - set(LEAD_FIELDS)
    if unknown:
        fail("lead_import.required_fields", f"unknown fields {sorted(unknown)}; use any of {', '.join(LEAD_FIELDS)}")
    if not 1 <= s["search"]["semantic_limit"] <= 1000:
        fail("search.semantic_limit", "must be between 1 and 1000")
    if not -1 <= s["search"]["semantic_min_similarity"] <= 1:
        fail("search.semantic_min_similarity", "must be between -1 and 1")
    if not 0 <= s["search"]["semantic_probes"] <= 1000:
        fail("search.semantic_probes", "must be between 0 (exact scan) and 1000")
    if not 0 <= s["search"]["queue_low_score"] <= 100:
        fail("search.queue_low_score", "must be between 0 and 100")
    for key in ("session_max_age", "max_upload_mb", "login_max_failures", "login_lockout_minutes"):
        if s["http"][key] <= 0:
            fail(f"http.{key}", "must be positive")
    _check_dialer(s["dialer"], fail)
    _check_reports(s["reports"], fail)
    _check_wallboard(s["wallboard"], fail)
    if not 5 <= s["monitoring"]["listener_queue_frames"] <= 5000:
        fail("monitoring.listener_queue_frames", "must be between 5 and 5000")


def _check_dialer(d: dict[str, Any], fail) -> None:
    for key in ("claim_minutes", "skip_minutes", "blocked_recheck_minutes"):
        if d[key] <= 0:
            fail(f"dialer.{key}", "must be positive")
    if d["line_test_uri"] and not d["line_test_uri"].startswith(("sip:", "sips:")):
        fail("dialer.line_test_uri", 'must be a SIP URI, e.g. "sip:echo@trunk.example"')
    if d["progressive_interval_seconds"] <= 0:
        fail("dialer.progressive_interval_seconds", "must be positive")
    if d["max_wrap_up_seconds"] < 0:
        fail("dialer.max_wrap_up_seconds", "must be 0 (no limit) or more")
    if d["headset"] not in ("browser", "phone"):
        fail("dialer.headset", f'must be "browser" or "phone", got {d["headset"]!r}')
    if not d["pause_reasons"]:
        fail("dialer.pause_reasons", "needs at least one reason code")
    if d["dial_uri"] and (not d["dial_uri"].startswith(("sip:", "sips:")) or "{number}" not in d["dial_uri"]):
        fail("dialer.dial_uri", 'must be a SIP URI with {number}, e.g. "sip:{number}@trunk.example"')
    _check_predictive(d, fail)


def _check_predictive(d: dict[str, Any], fail) -> None:
    from telesales.dial_routes import parse_routes

    for key in ("predictive_interval_seconds", "recompute_seconds", "predictive_ring_seconds"):
        if d[key] <= 0:
            fail(f"dialer.{key}", "must be positive")
    if not 0 < d["abandon_cap"] < 1:
        fail("dialer.abandon_cap", "must be a share between 0 and 1, e.g. 0.03 for 3 %")
    if d["abandon_message_wav"] and not Path(d["abandon_message_wav"]).is_file():
        fail("dialer.abandon_message_wav", f"no such file {d['abandon_message_wav']!r}")
    if not d["abandon_message_wav"] and not d["abandon_message"].strip():
        fail("dialer.abandon_message", "needs a text (or set abandon_message_wav)")
    try:
        parse_routes(d["dial_routes"])
    except ValueError as e:
        fail("dialer.dial_routes", str(e))


def _check_reports(r: dict[str, Any], fail) -> None:
    from crm.reports import parse_lead_costs, parse_money

    try:
        zoneinfo.ZoneInfo(r["time_zone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail("reports.time_zone", f"unknown time zone {r['time_zone']!r}")
    if r["effective_conversation_seconds"] < 0:
        fail("reports.effective_conversation_seconds", "must not be negative")
    try:
        parse_money(r["trunk_cost_per_minute"], "reports.trunk_cost_per_minute")
        parse_money(r["agent_hourly_cost"], "reports.agent_hourly_cost")
        parse_lead_costs(r["lead_costs"])
    except ValueError as e:
        raise SettingsError(str(e)) from None


def _check_wallboard(w: dict[str, Any], fail) -> None:
    if w["subscriber_queue"] < 2:
        fail("wallboard.subscriber_queue", "must be at least 2")
    if w["send_timeout_seconds"] <= 0:
        fail("wallboard.send_timeout_seconds", "must be positive")
    if w["keep_alerts"] < 0:
        fail("wallboard.keep_alerts", "must be 0 or more")
    if not 0 < w["abandon_cap"] < 1:
        fail("wallboard.abandon_cap", "must be a share between 0 and 1, e.g. 0.03 for 3 %")


def _merge(defaults: dict, overrides: dict, origin: str, prefix: str = "") -> None:
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise SettingsError(f"{name} (from {origin}): unknown setting")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise SettingsError(f"{name} (from {origin}): expected a table")
            if not defaults[key]:  # an open table (telephony.per_seat): its user checks the keys
                defaults[key] = value
                continue
            _merge(defaults[key], value, origin, f"{name}.")
        else:
            defaults[key] = coerce(name, defaults[key], value, origin)


def _apply_env(settings: dict, environ: dict[str, str]) -> None:
    for key, value in settings.items():
        if isinstance(value, dict):
            for sub in value:
                env = _env_name(key, sub)
                if env in environ:
                    value[sub] = coerce(f"{key}.{sub}", value[sub], environ[env], env)
        else:
            env = _env_name(None, key)
            if env in environ:
                settings[key] = coerce(key, value, environ[env], env)


def _namespace(d: dict) -> SimpleNamespace:
    return SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def load_settings(
    config_file: str | Path | None = None, environ: dict[str, str] | None = None
) -> SimpleNamespace:
    """Read the settings; raise SettingsError naming the key on any bad value."""
    environ = os.environ if environ is None else environ
    with open(CONFIG_DIR / "default.toml", "rb") as f:
        settings = tomllib.load(f)
    if config_file:
        try:
            with open(config_file, "rb") as f:
                user = tomllib.load(f)
        except OSError as e:
            raise SettingsError(f"--config: cannot read {config_file}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"--config: {config_file} is not valid TOML: {e}") from None
        _merge(settings, user, str(config_file))
    _apply_env(settings, environ)
    _check_ranges(settings)
    ns = _namespace(settings)
    ns.data_dir = Path(ns.data_dir).expanduser().resolve()
    ns.config_dir = CONFIG_DIR
    ns.config_file = Path(config_file).resolve() if config_file else None  # passed on to QA worker processes
    return ns
