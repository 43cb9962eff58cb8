"""The gateway's settings: the sections it reads (libs/common/settings.py declares them).

It binds `gateway_host`/`gateway_port` (tenants) and `gateway_metrics_port` (monitoring) of its
own section, accepts the operator key, and holds requests for a waking cluster up to the
serverless section's `wake_timeout_s` (longer for a start that waits its turn, `wake_queued_max_s`).
"""

from __future__ import annotations

from libs.common.settings import AccessSection, GatewaySection, LoggingSection, NatsSection, ServerlessSection


class GatewaySettings(NatsSection, LoggingSection, AccessSection, GatewaySection, ServerlessSection):
    pass
