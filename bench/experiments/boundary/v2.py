BODY = b'{"message":"Hello from Flowlet"}'
H = [("content-type", "application/json")]
V = 2
class App:
    async def __rsgi__(self, scope, proto):
        if V == 1:
            h = scope.headers
        elif V == 2:
            m = scope.method; p = scope.path; x = scope.proto
        else:
            h = scope.headers
            h.get("x-request-id"); h.get_all("host"); h.get("transfer-encoding"); h.get("content-encoding")
        proto.response_bytes(200, H, BODY)
app = App()
