"""Flowlet with the fixes of docs/benchmarks.md finding 2 applied by monkeypatching (an experiment:
the real fix belongs in src/). Serve it like Flowlet: granian --interface asgi --factory
patched_fixes:create_app with FLOWLET_WORKSPACE set and PATCH=none|body|cel|body,cel;
run from this folder (or with it on PYTHONPATH)."""
import os, re
from flowlet.server import app as appmod
from flowlet import expr as exprmod
from flowlet.errors import HTTPError

PATCH = set(os.environ.get("PATCH", "body,cel").split(","))

if "body" in PATCH:
    async def read_body(self, req, receive):
        declared = req.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HTTPError(400, "invalid Content-Length")
            if int(declared) > self.limit:
                raise HTTPError(413, f"request body larger than {self.limit} bytes")
            if declared == "0":
                return None
        elif "transfer-encoding" not in req.headers and req.scope.get("http_version") != "2":
            return None
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected")
        raw = message.get("body", b"")
        if len(raw) > self.limit:
            raise HTTPError(413, f"request body larger than {self.limit} bytes")
        # NEW: the declared length has arrived: the trailing empty message need not be awaited
        if message.get("more_body", False) and not (declared is not None and len(raw) == int(declared)):
            raw = await self._read_rest(receive, [raw], len(raw))
        if not raw:
            return None
        return appmod.parse_body(raw, req.headers.get("content-type", ""))
    appmod.FlowletApp.read_body = read_body

if "cel" in PATCH:
    _PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
    _orig_eval = exprmod.Expr.evaluate
    def evaluate(self, env):
        if not self.secret_names:
            names = self.variables
            try:
                if _PATH.fullmatch(self.source) and self.source.split(".", 1)[0] in exprmod.BASE_VARIABLES:
                    value = env
                    for part in self.source.split("."):
                        value = value[part]
                    return exprmod.to_json(value)
                return exprmod.to_json(self.program.execute({k: env[k] for k in names if k in env}))
            except Exception as exc:
                raise exprmod.ExprError(f"expression {self.source!r} failed: {exc}") from None
        return _orig_eval(self, env)
    exprmod.Expr.evaluate = evaluate

create_app = appmod.create_app
