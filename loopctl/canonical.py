"""The one JSON text that loopctl hashes and stores.

Event hashes and the campaign spec's hash are computed over exactly the text the
database keeps, so a reader checks a hash by hashing what it reads back. Hashing a
re-derivation instead (a spec parsed and validated again) raised false tamper alarms
whenever validation changed the last digit of a float.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# what json.dumps(obj, **these options) builds for every call; one instance keeps no state
# between calls, and made once it halves the cost of a small object (an event's header)
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is; NaN and infinity are refused, never stored.

    Floats are written with ``repr``, which reads back to the same float, so
    ``canonical(json.loads(canonical(x))) == canonical(x)`` for anything storable.
    """
    return _ENCODER.encode(obj)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
