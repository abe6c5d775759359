"""The raw RSGI app (BOUNDARY_VARIANT=0, the default) and three variants that add one piece of
Flowlet's boundary work each: 1 reads the header map (granian copies its HeaderMap), 2 reads
method, path and proto, 3 makes four header lookups by name."""

import os

BODY = b'{"message":"Hello from Flowlet"}'
HEADERS = [("content-type", "application/json")]
VARIANT = int(os.environ.get("BOUNDARY_VARIANT", "0"))


class App:
    async def __rsgi__(self, scope, proto):
        if VARIANT == 1:
            scope.headers
        elif VARIANT == 2:
            scope.method, scope.path, scope.proto
        elif VARIANT == 3:
            h = scope.headers
            h.get("x-request-id"), h.get_all("host"), h.get("transfer-encoding"), h.get("content-encoding")
        proto.response_bytes(200, HEADERS, BODY)


app = App()
