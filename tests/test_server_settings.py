"""`credit-ledger serve` runs gunicorn with exactly the settings of gunicorn.conf.py."""

from __future__ import annotations

from gunicorn.config import KNOWN_SETTINGS

from api.server import gunicorn_conf
from api.server.server import LedgerServer
from api.server.worker import QuietAccessLogger


def test_serve_applies_every_setting_of_the_gunicorn_config() -> None:
    defined = {s.name for s in KNOWN_SETTINGS} & vars(gunicorn_conf).keys()
    cfg = LedgerServer({}).cfg
    assert {"logger_class", "worker_class", "threads", "logconfig_dict"} <= defined
    for name in defined:
        setting = cfg.settings[name]
        assert setting.value == setting.validator(getattr(gunicorn_conf, name)), name


def test_serve_writes_no_access_line_of_gunicorns_own() -> None:
    assert LedgerServer({}).cfg.logger_class is QuietAccessLogger


def test_command_line_overrides_win_over_the_config() -> None:
    cfg = LedgerServer({"bind": "127.0.0.1:9999", "workers": 3}).cfg
    assert cfg.bind == ["127.0.0.1:9999"]
    assert cfg.workers == 3
