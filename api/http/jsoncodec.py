"""JSON on the wire with msgspec: decimals stay exact both ways, bad bodies are 400s.

Floats decode as Decimal (never a binary float) and Decimals encode as strings. A body
msgspec refuses is a DRF-shaped 400 (`JSON parse error - …`), too-deep nesting included.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import falcon
import falcon.media
import msgspec

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="string")


def _malformed(message: str) -> falcon.MediaMalformedError:
    """Falcon's 400 for a bad body; the message ends its description."""
    error = falcon.MediaMalformedError("JSON")
    error.__cause__ = ValueError(message)
    return error


def encode(media: object) -> bytes:
    return _encoder.encode(media)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes) -> Any:
    """msgspec decides; the stdlib parser only reads what msgspec refuses.

    msgspec refuses escaped lone surrogates ("\\ud800") that Python's json (and so DRF)
    accepts and then refuses field by field; everything else msgspec refuses is malformed.
    """
    try:
        return _decoder.decode(data)
    except RecursionError:
        message = "nesting too deep"
    except msgspec.DecodeError as error:
        message = str(error)
        try:
            return json.loads(data, parse_float=Decimal, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            pass
    raise _malformed(message)


class MsgspecJSONHandler(falcon.media.BaseHandler):
    """Falcon's media handler for application/json."""

    exhaust_stream = True

    def deserialize(self, stream: Any, content_type: str | None,
                    content_length: int | None) -> Any:
        data = stream.read()
        if not data:
            raise falcon.MediaNotFoundError("JSON")
        return decode(data)

    def serialize(self, media: object, content_type: str | None) -> bytes:
        return encode(media)



JSON = MsgspecJSONHandler()
