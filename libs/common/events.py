"""Event models, one per subject kind; each carries id, time and schema version."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from libs.common.models import ClusterStatus, utcnow


class Event(BaseModel):
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = 1
    request_id: str | None = None


class ClusterDesiredStateChanged(Event):
    """The API changed a cluster's desired state; the provisioner reconciles it."""

    cluster_id: str
    tenant_org_id: str
    change: Literal["created", "updated", "deleted"]
    generation: int


class ClusterStatusChanged(Event):
    """The provisioner moved a cluster to a new lifecycle status."""

    cluster_id: str
    tenant_org_id: str
    status: ClusterStatus
    reason: str
    endpoint: str | None = None
    nodes: int = 0
