"""gunicorn -c gunicorn.conf.py: the settings live in the package (api/server/gunicorn_conf.py)."""

from api.server.gunicorn_conf import *  # noqa: F403
