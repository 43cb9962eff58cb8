"""How a NATS handler's failure ends, the same in every service.

- temporary (NATS away or slow, an engine away): `try_again_later` naks the message with a delay,
  so JetStream delivers it again once the outage has had time to pass;
- permanent (an event that does not parse, a cluster that no longer exists): `give_up` terminates
  it, its reason in the log, since a redelivery would fail the same way;
- anything else is a bug: `FailureOutcomes` logs it and lets it go on to the ack policy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import structlog
from faststream import BaseMiddleware
from faststream.exceptions import HandlerException, NackMessage, RejectMessage
from pydantic import ValidationError

# NATS away, reconnecting or slow to answer: every nats-py error (publish, KV, JetStream API)
NATS_FAILURES: tuple[type[BaseException], ...] = (nats.errors.Error, asyncio.TimeoutError, ConnectionError)
RETRY_DELAY_S = 5.0  # long enough for a NATS reconnect (0.5 s apart) or an engine restart to begin
# a request that has a recent answer (a record seen, a key checked lately) waits for the store
# this long before it goes on with what it knew: a NATS server's death costs it no more
KNOWN_STATE_WAIT_S = 2.0

_log = structlog.get_logger("failures")


def try_again_later(log, reason: str, exc: BaseException, delay_s: float = RETRY_DELAY_S,
                    **fields: Any) -> NackMessage:
    """Raise the answer: the message comes back after `delay_s`."""
    log.warning("message redelivered later", reason=reason, error=f"{type(exc).__name__}: {exc}",
                delay_s=delay_s, **fields)
    return NackMessage(delay=delay_s)


def give_up(log, reason: str, **fields: Any) -> RejectMessage:
    """Raise the answer: the message is terminated (JetStream never delivers it again)."""
    log.warning("message dropped for good", reason=reason, **fields)
    return RejectMessage()


class FailureOutcomes(BaseMiddleware):
    """Every subscriber's last word on a failure its handler did not turn into an outcome.

    An event that does not validate against its model never will: terminated, not redelivered
    (a nak would bring it back forever); FastStream validates before the handler runs, hence here.
    Any other exception is a bug: logged here, since the broker is built without FastStream's
    logger, and raised again for the subscriber's ack policy.
    """

    async def consume_scope(self, call_next, msg):
        subject = getattr(msg.raw_message, "subject", "?")
        try:
            return await call_next(msg)
        except ValidationError as exc:
            raise give_up(_log, "malformed event", subject=subject, error=str(exc).splitlines()[0]) from exc
        except HandlerException:
            raise  # already an outcome: nak, term or ack
        except Exception:  # a bug: said loudly here, never swallowed
            _log.exception("handler failed", subject=subject)
            raise
