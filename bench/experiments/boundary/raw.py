"""The RSGI limit: the smallest RSGI app giving the same JSON answer as raw_asgi.py."""

BODY = b'{"message":"Hello from Flowlet"}'
HEADERS = [("content-type", "application/json")]      # granian adds Content-Length


class App:
    async def __rsgi__(self, scope, proto):
        proto.response_bytes(200, HEADERS, BODY)


app = App()
