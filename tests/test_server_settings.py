"""`credit-ledger serve` runs gunicorn with exactly the settings of gunicorn.conf.py."""

from __future__ import annotations

from api.server import gunicorn_conf
from api.server.server import SETTINGS, LedgerServer
from api.server.worker import QuietAccessLogger


def test_serve_applies_every_setting_of_the_gunicorn_config() -> None:
    cfg = LedgerServer({}).cfg
    assert {"logger_class", "worker_class", "threads", "logconfig_dict"} <= set(SETTINGS)
    for name in SETTINGS:
        setting = cfg.settings[name]
        assert setting.value == setting.validator(getattr(gunicorn_conf, name)), name


def test_serve_writes_no_access_line_of_gunicorns_own() -> None:
    assert LedgerServer({}).cfg.logger_class is QuietAccessLogger


def test_command_line_overrides_win_over_the_config() -> None:
    cfg = LedgerServer({"bind": "127.0.0.1:9999", "workers": 3}).cfg
    assert cfg.bind == ["127.0.0.1:9999"]
    assert cfg.workers == 3
