"""Reverse image search: links to the major services, for one image a user chose to share.

An original leaves the newsroom only when a user asks, for that one image: sharing makes a short-lived
public URL of it (a random token the API serves without authentication until it expires, whatever the
storage: a presigned S3 URL would live ``presign_seconds`` and could not be listed again by the report)
and records when and by whom, so that the report can say whether it was shared.

The services fetch the picture from that URL, so it must be reachable from the internet. Link formats as
of December 2026 (each service's "search by image URL" address; they change without notice).
"""

import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from service.models import Image, utcnow

#: Service name -> link template (``{url}`` is the percent-encoded public URL of the picture).
SERVICES: dict[str, str] = {
    "google_lens": "https://lens.google.com/uploadbyurl?url={url}",
    "bing": "https://www.bing.com/images/search?view=detailv2&iss=sbi&q=imgurl:{url}",
    "yandex": "https://yandex.com/images/search?rpt=imageview&url={url}",
    "tineye": "https://tineye.com/search?url={url}",
}
EXPIRED = "Shared before; share it again for fresh links (the public URL has expired)."
NOT_SHARED = "Not shared: a user must share this picture (a short-lived public URL) before searching the web for it."


def links(public_url: str) -> dict[str, str]:
    """Each service's search link for the picture at ``public_url``."""
    encoded = quote(public_url, safe="")
    return {name: template.format(url=encoded) for name, template in SERVICES.items()}


def share(image: Image, by: str, seconds: int, now: datetime | None = None) -> str:
    """Record that ``by`` shared ``image`` and return a fresh token for its public URL (valid ``seconds``).

    ``shared_at`` keeps the first time it was shared: once the picture has left, it has left."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    if image.shared_at is None:
        image.shared_at, image.shared_by = now, by
    image.share_token = token
    image.share_expires_at = now + timedelta(seconds=seconds)
    return token


def live_token(image: Image, now: datetime | None = None) -> str | None:
    """The token of the image's public URL while it lives, else None."""
    if image.share_token is None or image.share_expires_at is None or image.share_expires_at <= (now or utcnow()):
        return None
    return image.share_token


def report(image: Image, public_url: str | None = None) -> dict[str, Any]:
    """The report's ``reverse_search``: whether the picture was shared and, with a live public URL, the links."""
    shared = image.shared_at is not None
    return {
        "shared": shared,
        "shared_at": image.shared_at.isoformat() if image.shared_at else None,
        "shared_by": image.shared_by,
        "links": links(public_url) if public_url else {},
        "note": None if public_url else (EXPIRED if shared else NOT_SHARED),
    }
