"""The console: a browser UI on the admin listener for endpoints' security settings and secrets.

Mount it with ``Console(root, reload=...)`` and pass each request under /console to
``Console.handle``; see ``flowlet.console.app``.
"""

from flowlet.console.app import Console
from flowlet.console.web import ConsoleRequest, ConsoleResponse

__all__ = ["Console", "ConsoleRequest", "ConsoleResponse"]
