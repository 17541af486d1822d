"""QR codes as inline SVG, for pages whose CSP allows no images from anywhere.

BankID's animated QR code changes every second, so the SVG is small: one path
of dark runs on a white square, a viewBox and no fixed size (the page's CSS
sizes it), no XML declaration, no styles, no external references.
"""

from __future__ import annotations

import io

import segno

__all__ = ["qr_svg"]

QUIET_ZONE = 4  # modules of white around the code, as the QR standard asks


def qr_svg(text: str, *, title: str = "QR") -> str:
    """An ``<svg>`` element holding ``text`` as a QR code.

    Error correction is at least L and raised for free when the version allows;
    dark modules are black on white whatever the page's colour scheme, which
    scanners need.
    """
    code = segno.make_qr(text, error="l", boost_error=True)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        border=QUIET_ZONE,
        omitsize=True,
        dark="#000",
        light="#fff",
        title=title,
        svgclass="qr",
        lineclass=None,
    )
    return out.getvalue().decode("utf-8")
