"""What the manager publishes, declared once: the status publisher on the lifecycle stream
(so the AsyncAPI document lists them), lifecycle events and the audit trail of API changes.

Built from the broker before it connects: the audit middleware and the AsyncAPI route need it
from the start; publishing itself happens only once the broker is connected."""

from __future__ import annotations

from faststream import AsyncAPI
from faststream.nats import NatsBroker

from libs.common import subjects
from libs.common.api_keys import Principal
from libs.common.events import AuditEvent, ClusterStatusChanged, Event
from libs.common.streams import LIFECYCLE


class Outbox:
    def __init__(self, broker: NatsBroker):
        self._broker = broker
        # per-cluster subjects: events are published to their own subject through this declaration
        self._status = broker.publisher(
            subjects.STATUS_ALL, stream=LIFECYCLE, schema=ClusterStatusChanged,
            title="cluster status", description="A cluster moved to a new lifecycle status.",
        )

    async def lifecycle(self, event: Event, subject: str) -> None:
        # Nats-Msg-Id lets JetStream drop a re-sent duplicate
        await self._broker.publish(event, subject, stream=LIFECYCLE.name, headers={"Nats-Msg-Id": event.event_id})

    async def audit(self, principal: Principal | None, method: str, path: str, status: int, request_id: str) -> None:
        event = AuditEvent(actor=principal.actor if principal else "anonymous",
                           actor_tenant=principal.tenant_org_id if principal else None,
                           method=method, path=path, status=status, request_id=request_id)
        tenant = principal.tenant_org_id if principal else None
        await self._broker.publish(event, subjects.tenant_audit(tenant), stream=subjects.AUDIT_STREAM)

    def asyncapi_json(self) -> str:
        return AsyncAPI(self._broker, title="es-serverless manager", version="0.1.0").to_specification().to_json()
