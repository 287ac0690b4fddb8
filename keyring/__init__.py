"""Pure cryptography for raftstore (installed as ``raftstore.keyring``).

Recipes only (STYLE rule 5): seal and open records, rotate and wrap DEKs,
derive KEKs from unlock keys, issue and verify certificates, mint and check
join tokens. No algorithm or nonce choices leak to callers; nothing here does
network I/O, reads the clock or touches files. It imports nothing from the
rest of raftstore.
"""

from ._ca import *  # noqa: F401,F403
from ._ca import __all__ as _ca_all
from ._deks import *  # noqa: F401,F403
from ._deks import __all__ as _deks_all
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _errors_all
from ._ids import *  # noqa: F401,F403
from ._ids import __all__ as _ids_all
from ._seal import *  # noqa: F401,F403
from ._seal import __all__ as _seal_all
from ._tokens import *  # noqa: F401,F403
from ._tokens import __all__ as _tokens_all
from ._unlock import *  # noqa: F401,F403
from ._unlock import __all__ as _unlock_all

__all__ = [*_errors_all, *_ids_all, *_seal_all, *_deks_all, *_unlock_all, *_ca_all, *_tokens_all]
