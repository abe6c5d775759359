"""`flowlet init DIR`: a small commented workspace to start from."""

from __future__ import annotations

from pathlib import Path

FILES = {
    "flowlet.yaml": """\
# Workspace settings. Every key is optional; unknown keys are errors.
name: my-api                 # also the realm of Basic and JWT challenges
api_prefix: /api             # every endpoint path (and /api/csrf) lives under it
# domain: example.com        # Domain attribute of the CSRF cookie
# csrf: {cookie: csrf, header: X-CSRF-TOKEN, grace_s: 86400}
# hsts: {max_age: 31536000, include_subdomains: true}
limits:
  body_bytes: 1048576        # larger request bodies are answered 413
  timeout_s: 30              # a flow running longer is answered 504
# store: sqlite              # or a postgresql:// URL
# openapi: {path: /openapi.json}   # serve the OpenAPI document (also: flowlet openapi DIR)
""",
    "flows/hello.yaml": """\
# GET /api/hello?name=Ada  ->  {"message": "Hello, Ada!"}
endpoint:
  method: GET
  path: /hello
  # cors: {allow: selected, domains: "*.example.com", headers: Content-Type, max_age: 300}
respond:
  status: 200
  body:
    message: "='Hello, ' + ('name' in query ? query.name : 'world') + '!'"
""",
    "flows/add.yaml": """\
# POST /api/add {"a": 1, "b": 2}  ->  {"sum": 3}   (a Python function as a step)
endpoint:
  method: POST
  path: /add
  # auth: {type: basic, secret: my-users}   # create it: flowlet secrets set my-users -w DIR --type basic ...
  # csrf: true                               # needs GET /api/csrf first, then the X-CSRF-TOKEN header
  input:           # JSON Schema; {"a": "x"} is answered 400 with each problem (shared schemas: schemas/*.yaml)
    body:
      type: object
      required: [a, b]
      properties:
        a: {type: number}
        b: {type: number}
steps:
  - id: total
    function: functions.math:add
    input: {a: "=body.a", b: "=body.b"}
respond:
  body: {sum: "=total"}
""",
    "functions/math.py": """\
def add(a, b):
    \"\"\"Called with keyword arguments from the step's input.\"\"\"
    return a + b
""",
    ".gitignore": ".flowlet/\n",
}


def init_workspace(root: Path) -> list[Path]:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not empty; choose a new folder")
    created = []
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        created.append(path)
    return created
