"""The shard controller's settings: the sections it reads (libs/common/settings.py declares them).

Its policy (`ShardPolicySection`, which planning uses as `ShardPolicy`), its port and leases,
and reporting's section for `metrics_max_age_s`: it declares the metrics stream as well as
reporting, its owner, so that either can start first (issue 14 item 2 leaves that to the owner).
"""

from __future__ import annotations

from libs.common.settings import (
    BindSection,
    LeaseSection,
    LoggingSection,
    NatsSection,
    ReportingSection,
    ShardControllerSection,
    ShardPolicySection,
)


class ShardControllerSettings(
    NatsSection, LoggingSection, BindSection, ShardControllerSection, LeaseSection, ShardPolicySection,
    ReportingSection,
):
    pass
