"""The built-in throttle on authentication: per client address and per user name.

Throttle, do not lock. Every password or signature check first takes a place in two fixed
windows: the client's and, for Basic, the user name's. Past ``per_client`` the client gets 429
before any check; past ``per_user`` logins as that name get 429 before any check, except from
clients that authenticated as that user in the last 24 hours (so the real user keeps working
while the name is under attack, and everyone else waits out the window). A successful check
gives its places back, so only failures use up the budget.

Counting an attempt *before* the check makes the limit exact under concurrency: parallel
guesses cannot all pass a read of the counter before any of them is counted.

Answers from the verification caches (credentials already proven) skip the counters; they only
peek at this server's block markers, and a marked client or user goes through :meth:`admit`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flowlet.edge.ratelimit import Limiter, Rate, bounded, client_key, too_many

RECENT_MS = 24 * 3600 * 1000        # how long a successful login exempts its client from per_user

_ADMIT_LUA = """
local c = 0
if ARGV[1] ~= '0' then
  c = redis.call('INCR', KEYS[1])
  if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  if c > tonumber(ARGV[1]) then return {c, 0} end
end
local u = 0
if ARGV[3] ~= '0' and redis.call('EXISTS', KEYS[3]) == 0 then
  u = redis.call('INCR', KEYS[2])
  if u == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
end
return {c, u}
"""

# give the places back (never re-creating a key whose window ended) and remember the pair
_SUCCESS_LUA = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECR', KEYS[2]) end
if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[4]) end
return 1
"""


@dataclass(slots=True)
class Ticket:
    """One admitted attempt: which places it took, to give back on success."""

    client: str
    user: str | None
    client_key: str | None            # counter names, None when not counted
    user_key: str | None
    client_count: int = 0
    user_count: int = 0
    client_end: int = 0
    user_end: int = 0
    remote: bool = False              # counted in Redis (else in the local table)


class AuthThrottle:
    """One per worker, shared by every Basic and JWT endpoint of the workspace."""

    def __init__(self, limiter: Limiter):
        self.limiter = limiter
        self.table = limiter.table
        self.per_client: Rate | None = limiter.settings.per_client
        self.per_user: Rate | None = limiter.settings.per_user
        self._seen: dict[tuple[str, str], float] = {}     # pairs whose success this process recorded

    @property
    def enabled(self) -> bool:
        return self.per_client is not None or self.per_user is not None

    # ---- the cache-hit path: local peeks only ------------------------------------------------

    def quiet(self) -> bool:
        """True when nobody is blocked right now (one shared-memory read): no need to ask for
        the client's address at all."""
        return not self.table.any_flags(int(time.time() * 1000))

    def suspect(self, client: str | None, user: str | None) -> bool:
        """True when this server has marked the client (or the user, for a client not known to
        have logged in as them): the caller then goes through :meth:`admit`."""
        now = int(time.time() * 1000)
        if not self.table.any_flags(now):            # nobody is blocked: the usual case, one read
            if user is not None and self.per_user is not None:
                self._note_success(user, client, now)
            return False
        c = client_key(client)
        if self.per_client is not None and self.table.peek("af:b:c:" + c, now):
            return True
        if user is None or self.per_user is None:
            return False
        u = bounded(user)
        if self.table.peek("af:b:u:" + u, now) and not self.table.peek(f"af:ok:{u}\0{c}", now):
            return True
        self._note_success(user, client, now)
        return False

    async def confirm(self, client: str | None, user: str | None) -> None:
        """A cached success from a suspect client: counted like any attempt, then given back."""
        await self.succeeded(await self.admit(client, user))

    # ---- the slow path -----------------------------------------------------------------------

    async def admit(self, client: str | None, user: str | None) -> Ticket:
        """Take this attempt's places; raises 429 when the client or the user name is over."""
        c = client_key(client)
        u = bounded(user) if user is not None else None
        now = int(time.time() * 1000)
        ck = self._window_key("af:c:" + c, self.per_client, now)
        uk = self._window_key("af:u:" + u, self.per_user, now) if u is not None else None
        ticket = Ticket(c, u, ck, uk)
        redis = self.limiter.redis
        if redis is not None:
            got = await redis.call(_ADMIT_LUA, [ck or "-", uk or "-", f"af:ok:{u}\0{c}"],
                                   [self._limit(self.per_client), self._ttl(self.per_client, now),
                                    self._limit(self.per_user if uk else None), self._ttl(self.per_user, now)])
            if got is not None:
                ticket.remote = True
                ticket.client_count, ticket.user_count = int(got[0]), int(got[1])
                ticket.client_end = self._end(self.per_client, now)
                ticket.user_end = self._end(self.per_user, now)
                if not ticket.user_count:
                    ticket.user_key = None
                self._judge(ticket, now)
                return ticket
        self._admit_local(ticket, now)
        return ticket

    def _admit_local(self, t: Ticket, now: int) -> None:
        if t.client_key is not None and self.per_client is not None:
            t.client_count, t.client_end = self.table.add(t.client_key, 1, self.per_client.window_s * 1000, now)
            if t.client_count > self.per_client.limit:
                self._judge(t, now)
        if t.user_key is not None and self.per_user is not None:
            if self.table.peek(f"af:ok:{t.user}\0{t.client}", now):
                t.user_key = None
                return
            t.user_count, t.user_end = self.table.add(t.user_key, 1, self.per_user.window_s * 1000, now)
        self._judge(t, now)

    def _judge(self, t: Ticket, now: int) -> None:
        pc, pu = self.per_client, self.per_user
        if pc is not None and t.client_count > pc.limit:
            self.table.flag("af:b:c:" + t.client, t.client_end)
            raise too_many("too many failed authentication attempts from this client; retry later",
                           "auth-client", pc.limit, pc.window_s, t.client_end, stage="auth", reason="throttled")
        if pu is not None and t.user_key is not None and t.user_count > pu.limit:
            self.table.flag("af:b:u:" + (t.user or ""), t.user_end)
            raise too_many("too many failed logins for this user name; retry later",
                           "auth-user", pu.limit, pu.window_s, t.user_end, stage="auth", reason="throttled")

    def failed(self, t: Ticket) -> None:
        """The check failed: its places stay taken; at the limit, mark the client or user so
        cached answers from them come through :meth:`admit` too."""
        if self.per_client is not None and t.client_count >= self.per_client.limit:
            self.table.flag("af:b:c:" + t.client, t.client_end)
        if self.per_user is not None and t.user_key is not None and t.user_count >= self.per_user.limit:
            self.table.flag("af:b:u:" + (t.user or ""), t.user_end)

    async def succeeded(self, t: Ticket) -> None:
        """Give the places back (before answering, so the client's next attempt sees them);
        remember that this client logged in as this user."""
        now = int(time.time() * 1000)
        if t.remote and self.limiter.redis is not None:
            keys = [t.client_key or "-", t.user_key or "-", f"af:ok:{t.user}\0{t.client}"]
            args = ["1" if t.client_count else "0", "1" if t.user_key else "0",
                    "1" if t.user is not None else "0", RECENT_MS]
            await self.limiter.redis.call(_SUCCESS_LUA, keys, args)
        else:
            if t.client_count and self.per_client is not None:
                self.table.add(t.client_key or "", -1, self.per_client.window_s * 1000, now)
            if t.user_key is not None and self.per_user is not None:
                self.table.add(t.user_key, -1, self.per_user.window_s * 1000, now)
        if t.user is not None:
            self.table.mark(f"af:ok:{t.user}\0{t.client}", now + RECENT_MS)
            self._seen[(t.user, t.client)] = time.monotonic() + 3600

    def _note_success(self, user: str, client: str | None, now: int) -> None:
        """A cached success: record the pair once an hour per process, not on every request."""
        until = self._seen.get((user, client))
        mono = time.monotonic()
        if until is not None and until > mono:
            return
        if len(self._seen) > 10000:
            self._seen.clear()
        self._seen[(user, client)] = mono + 3600
        ok = f"af:ok:{bounded(user)}\0{client_key(client)}"
        self.table.mark(ok, now + RECENT_MS)
        if self.limiter.redis is not None and self.limiter.redis.available():
            import asyncio
            asyncio.get_running_loop().create_task(self.limiter.redis.call(
                _SUCCESS_LUA, ["-", "-", ok], ["0", "0", "1", RECENT_MS]))

    # ---- helpers -------------------------------------------------------------------------

    @staticmethod
    def _window_key(name: str, rate: Rate | None, now: int) -> str | None:
        if rate is None:
            return None
        return f"{name}:{now // (rate.window_s * 1000)}"

    @staticmethod
    def _limit(rate: Rate | None) -> int:
        return rate.limit if rate is not None else 0

    @staticmethod
    def _ttl(rate: Rate | None, now: int) -> int:
        if rate is None:
            return 0
        w = rate.window_s * 1000
        return (now // w + 1) * w - now + 1000

    @staticmethod
    def _end(rate: Rate | None, now: int) -> int:
        if rate is None:
            return 0
        w = rate.window_s * 1000
        return (now // w + 1) * w
