"""Who is asking: the signed-in user of a request (sign-in itself is set up from ``Config.auth_file``)."""
from __future__ import annotations

from flask import has_request_context, request

#: The user of a server without sign-in (local use): everyone shares one identity.
LOCAL_USER = "local"


def current_user() -> str:
    """The signed-in user name of the current request, else ``LOCAL_USER`` (no sign-in, or no request)."""
    if has_request_context() and request.authorization and request.authorization.username:
        return request.authorization.username
    return LOCAL_USER
