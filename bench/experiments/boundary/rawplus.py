"""raw RSGI + Flowlet's wire-level work: the same scope reads and the same 4 answer headers."""
BODY = b'{"message":"Hello from Flowlet"}'
ALWAYS = (("x-content-type-options", "nosniff"), ("server", "flowlet"))
CT = [("content-type", "application/json")]
class App:
    seq = 0
    async def __rsgi__(self, scope, proto):
        if scope.proto != "http":
            return
        m = scope.method; p = scope.path; h = scope.headers
        rid = h.get("x-request-id")
        hosts = h.get_all("host")
        h.get("transfer-encoding"); h.get("content-encoding")
        self.seq += 1
        rid = f"1a2b-{self.seq:x}"
        proto.response_bytes(200, [*CT, ("x-request-id", rid), *ALWAYS], BODY)
app = App()
