"""Who is asking, and sign-in: HTTP Basic auth against a users file (``Config.auth_file``).

With ``auth_file`` set, every request needs a user and password of that file (bcrypt hashes,
see ``fusion.users``), except the public endpoints (``GET /healthz``); anything else answers
401 with ``WWW-Authenticate``. Without it nothing is asked and everyone is ``LOCAL_USER``.

The check is a Flask ``before_request`` hook reading Werkzeug's parsed ``request.authorization``.
dash-auth's BasicAuth was tried first: it answers a malformed ``Authorization`` header, or a
malformed ``_dash-update-component`` body sent before signing in, with a 500 and a traceback.

bcrypt is slow on purpose and a page sends many requests (every hover), so the outcome of
each check (signed in or refused) is remembered in a small bounded map keyed by a keyed hash of
(user, password), never the password itself: the same wrong password sent again and again (an
open page of a removed user) costs one bcrypt check, not one per request. The map is emptied
whenever the users file changes (size, mtime or inode), so users added or removed by the admin
take effect at the next request, without a restart.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections import OrderedDict

from flask import Response, g, has_request_context, jsonify, request

from fusion import users as users_file
from fusion.errors import InvalidInput

from . import health

#: The user of a server without sign-in (local use): everyone shares one identity.
LOCAL_USER = "local"
#: Most checked (user, password) pairs remembered per web process (least recently used go first).
MAX_REMEMBERED = 256
REALM = "fusion-saliency"

log = logging.getLogger(__name__)


def current_user() -> str:
    """The signed-in user name of the current request, else ``LOCAL_USER`` (no sign-in, or no request)."""
    if has_request_context():
        return g.get("fusion_user") or LOCAL_USER
    return LOCAL_USER


class UsersFile:
    """Checks user names and passwords against a users file, re-read when it changes."""

    def __init__(self, path: str, remembered: int = MAX_REMEMBERED):
        self.path = path
        self.remembered = remembered
        self._secret = os.urandom(32)  # keys the map's hashes: they reveal nothing outside this process
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._users: dict[str, str] = {}
        self._error: str | None = None
        self._known: OrderedDict[bytes, bool] = OrderedDict()
        self._pending: dict[bytes, threading.Lock] = {}
        self._dummies: dict[str, str] = {}

    def _refresh(self) -> None:
        """Re-read the file if its size, mtime or inode changed; forget every remembered sign-in then."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as exc:
            stamp = ("missing", str(exc))
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                found, error = users_file.read_users(self.path), None
            except (InvalidInput, OSError) as exc:
                found, error = {}, str(exc)
            if stamp[0] == "missing":
                error = f"the users file {self.path} is missing"
            if error:
                log.error("sign-in refused for everyone until the users file is fixed: %s", error)
            self._stamp, self._users, self._error = stamp, found, error
            self._known.clear()

    def _dummy(self) -> str:
        """A hash of nobody's password at the cost of the file's hashes (made once per cost, when first needed)."""
        with self._lock:
            cost = next(iter(self._users.values()), f"$2b${users_file.ROUNDS:02d}$")[4:6]
            dummy = self._dummies.get(cost)
        if dummy is None:
            dummy = users_file.hash_password("not the password of anyone", rounds=int(cost))
            with self._lock:
                self._dummies[cost] = dummy
        return dummy

    def __len__(self) -> int:
        """How many checks are remembered now."""
        return len(self._known)

    @property
    def error(self) -> str | None:
        """Why the users file cannot be used right now (missing or malformed), else None."""
        self._refresh()
        return self._error

    def check(self, name: str, password: str) -> bool:
        """Whether ``name`` and ``password`` match the users file as it is now."""
        self._refresh()
        key = hmac.new(self._secret, f"{len(name)}:{name}:{password}".encode("utf-8", "surrogatepass"),
                       hashlib.sha256).digest()
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
            hashed = self._users.get(name)
            stamp = self._stamp
            gate = self._pending.setdefault(key, threading.Lock())
        # One bcrypt check per (user, password) at a time: the page's first burst of requests
        # waits for it instead of each running its own.
        with gate:
            with self._lock:
                if key in self._known:
                    return self._known[key]
            try:
                # An unknown user costs a check too, so timing does not tell which names exist.
                ok = users_file.check_password(hashed or self._dummy(), password) and hashed is not None
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            with self._lock:
                if stamp == self._stamp:
                    self._known[key] = ok
                    while len(self._known) > self.remembered:
                        self._known.popitem(last=False)
        return ok


def challenge() -> Response:
    """401 asking the browser for a user and password."""
    response = Response("Sign-in required: use your fusion-saliency user name and password.\n", 401,
                        mimetype="text/plain")
    response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def register(app, config, public: tuple[str, ...] = (health.ENDPOINT,)) -> UsersFile | None:
    """Ask for sign-in on every route of ``app`` but the GET endpoints in ``public``, if ``config.auth_file``."""
    if not config.auth_file:
        return None
    checker = UsersFile(config.auth_file)

    def require_sign_in():
        if request.endpoint in public and request.method in ("GET", "HEAD"):
            return None
        if checker.error:
            return jsonify(error="sign-in is unavailable: the server's users file cannot be read; "
                                 "ask the server's admin"), 503
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
            return challenge()
        if not checker.check(auth.username, auth.password):
            return challenge()
        g.fusion_user = auth.username
        return None

    app.server.before_request(require_sign_in)
    return checker
