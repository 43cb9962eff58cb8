"""The shard controller's settings: the sections it reads (libs/common/settings.py declares them).

Its policy (`ShardPolicySection`, which planning uses as `ShardPolicy`), its port and leases.
It only binds the metrics stream (reporting, its owner, declares it and its retention).
"""

from __future__ import annotations

from libs.common.settings import (
    BindSection,
    LeaseSection,
    LoggingSection,
    NatsSection,
    ShardControllerSection,
    ShardPolicySection,
)


class ShardControllerSettings(
    NatsSection, LoggingSection, BindSection, ShardControllerSection, LeaseSection, ShardPolicySection,
):
    pass
