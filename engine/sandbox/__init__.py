"""Where the user code of `code` nodes runs: isolated processes, never the server's own.

`ProcessSandbox` implements the `CodeSandbox` port with a pool of warm sandbox processes;
`sandbox_status()` says how isolated they are on this machine (docs/sandbox.md).
"""

from engine.sandbox.isolation import sandbox_status
from engine.sandbox.pool import ProcessSandbox

__all__ = ["ProcessSandbox", "sandbox_status"]
