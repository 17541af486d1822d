"""A development RFC 3161 time-stamping authority, served over HTTP on loopback.

It lets ``socialjour demo`` and the tests make PAdES B-T signatures the way
production does (pyHanko's ``HTTPTimeStamper`` against a TSA URL) without a
network. The tokens come from pyHanko's ``DummyTimeStamper``, which builds a
proper TimeStampResp for any request and signs it with the given key and
certificate; this module only adds the HTTP side of RFC 3161 section 3.4.

Never expose it beyond loopback: it stamps anything anyone sends.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from asn1crypto import core, tsp
from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder
from pyhanko.sign.timestamps import DummyTimeStamper

__all__ = ["QUERY_TYPE", "REPLY_TYPE", "TIMESTAMPER_KEY", "create_tsa_app"]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_QUERY_BYTES = 16 * 1024
"""A TimeStampReq is a hash and a few options: well under 1 KiB in practice."""

TIMESTAMPER_KEY = web.AppKey("timestamper", DummyTimeStamper)


def create_tsa_app(cert_path: Path, key_path: Path) -> web.Application:
    """An app answering ``POST /`` time-stamp queries with tokens signed by ``key_path``."""
    app = web.Application(client_max_size=MAX_QUERY_BYTES)
    app[TIMESTAMPER_KEY] = DummyTimeStamper(
        tsa_cert=load_cert_from_pemder(str(cert_path)),
        tsa_key=load_private_key_from_pemder(str(key_path), passphrase=None),
    )
    app.router.add_post("/", _timestamp)
    return app


async def _timestamp(request: web.Request) -> web.Response:
    if request.content_type != QUERY_TYPE:
        return web.Response(status=415, text=f"send {QUERY_TYPE}")
    body = await request.read()
    try:
        query = tsp.TimeStampReq.load(body)
        query.native  # noqa: B018 - asn1crypto parses lazily; force it to find bad input here
    except ValueError:
        return _reply(_rejection("bad_data_format"), status=400)
    if query["version"].native != "v1":
        return _reply(_rejection("bad_request"), status=400)
    response = await request.app[TIMESTAMPER_KEY].async_request_tsa_response(query)
    return _reply(response)


class _Rejection(core.Sequence):
    """A TimeStampResp without a token (RFC 3161 2.4.2 makes the token optional;
    asn1crypto's ``TimeStampResp`` insists on it, so it cannot write this one)."""

    _fields = [("status", tsp.PKIStatusInfo)]  # noqa: RUF012 - asn1crypto's schema style


def _rejection(failure: str) -> _Rejection:
    return _Rejection(
        {
            "status": tsp.PKIStatusInfo(
                {"status": "rejection", "fail_info": tsp.PKIFailureInfo({failure})}
            )
        }
    )


def _reply(response: tsp.TimeStampResp | _Rejection, *, status: int = 200) -> web.Response:
    return web.Response(body=response.dump(), status=status, content_type=REPLY_TYPE)
