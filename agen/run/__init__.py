"""Run directories: shards, the ledger, the sink, restore on resume, fault injection.

`agen.run` is also the public entry point `agen.run(config, **overrides)` (see `agen.api`): the
package is made callable and forwards the call to the top layer only when called, so importing
these mechanisms never pulls in the session.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, config: Any, **overrides: Any) -> Any:
        from agen import api  # call time only: agen.api is the top layer

        return api.run(config, **overrides)


sys.modules[__name__].__class__ = _CallablePackage
