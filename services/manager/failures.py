"""Which failures are temporary: NATS away or slow. A NATS handler naks those with a delay and
the work is done again; anything else is a bug or a permanent refusal and is not retried blindly."""

from __future__ import annotations

import nats.errors

# NATS errors (KV revision conflicts are handled where they happen), timeouts, a dropped socket
TEMPORARY: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, ConnectionError)

# long enough for a NATS restart or a leader election, short enough that a wake feels prompt
RETRY_DELAY_S = 2.0
