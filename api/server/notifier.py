"""The notifier process: record notifications from the log and deliver them, until stopped.

`credit-ledger serve` starts one beside gunicorn (unless LEDGER_NOTIFIER=off) and stops
it on exit; `credit-ledger notify` runs it alone. Several may run at once: the notifier
takes turns on its tracking row and dispatchers lease each delivery.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from api.server.outage import UNAVAILABLE
from api.server.wiring import Services
from notifications.dispatcher import Dispatcher
from notifications.notifier import Notifier

log = logging.getLogger("credit_ledger.notifier")
REMINDER_INTERVAL = 60.0  # seconds between checks of due expiry reminders
OUTAGE: tuple[type[Exception], ...] = (DBAPIError, *UNAVAILABLE)
PARENT = "LEDGER_NOTIFIER_PARENT"  # the pid of the `serve` that started the notifier


def run(services: Services, interval: float, once: bool = False,
        stopping: Callable[[], bool] = lambda: False) -> None:
    """Follow the log, check reminders at start and every minute, deliver what is due."""
    notifier = Notifier(services.ledger, services.engine)
    dispatcher = Dispatcher(services.engine)
    reminded = float("-inf")
    while not stopping():
        try:
            notifier.catch_up()
            if time.monotonic() - reminded >= REMINDER_INTERVAL:
                notifier.check_reminders()
                reminded = time.monotonic()
            while dispatcher.run_once():
                notifier.catch_up()
        except OUTAGE as error:  # try again on the next round
            log.warning("notifier round failed: %s", error.__class__.__name__)
        if once:
            return
        time.sleep(interval)


def stop_on_signals() -> Callable[[], bool]:
    """SIGTERM and SIGINT end the loop after the current round; so does the end of the
    `serve` that started this process (even a SIGKILL'd one: no orphan keeps sending)."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    parent = os.environ.get(PARENT)
    return lambda: stop.is_set() or (parent is not None and os.getppid() != int(parent))


def enabled() -> bool:
    return os.environ.get("LEDGER_NOTIFIER", "on").lower() not in ("off", "0", "false", "no")


def start_beside_server(database_url: str) -> subprocess.Popen[bytes] | None:
    """`serve`'s one notifier, a child process; None when LEDGER_NOTIFIER=off."""
    if not enabled():
        return None
    return subprocess.Popen([sys.executable, "-m", "api.cli", "notify",
                             "--database-url", database_url],
                            env={**os.environ, PARENT: str(os.getpid())})


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
