"""What the handler tests on FastStream's in-memory broker share: recording how each message
ended (ack, nak with its delay, or term) instead of settling it."""

from __future__ import annotations

from faststream.nats.testing import PatchedMessage


def settled_messages(monkeypatch, subject_prefix: str) -> list[tuple[str, dict]]:
    """(ack | nak | term, its options) of every message under `subject_prefix`; the events a
    handler sends on, under other subjects, are not counted."""
    done: list[tuple[str, dict]] = []

    def answer(name: str):
        async def record(message, **options) -> None:
            if message.subject.startswith(subject_prefix):
                done.append((name, options))
        return record

    for name in ("ack", "nak", "term"):
        monkeypatch.setattr(PatchedMessage, name, answer(name))
    return done
