"""gunicorn -c gunicorn.conf.py: the settings live in the package (api/gunicorn_conf.py)."""

from api.gunicorn_conf import *  # noqa: F403
