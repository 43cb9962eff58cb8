"""The manager's settings: the sections it reads (libs/common/settings.py declares them).

Its API and access, the gateway's public address (cluster endpoints) and activity period,
hibernation, backups, the provisioner with its leases, and both drivers (`ESS_DRIVER` picks
one; each driver takes only its own section). Modules that read several sections take this.
"""

from __future__ import annotations

from libs.common.settings import (
    AccessSection,
    ApiSection,
    BackupsSection,
    BindSection,
    GatewaySection,
    KubernetesSection,
    LeaseSection,
    LocalDriverSection,
    LoggingSection,
    NatsSection,
    ProvisionerSection,
    ServerlessSection,
)


class KubernetesDriverSettings(KubernetesSection, BackupsSection):
    """What the Kubernetes driver reads: its own section, and the backups' S3 store, which its
    engines are configured to reach (`drivers/kubernetes_backups.py`)."""


class ManagerSettings(
    NatsSection, LoggingSection, BindSection, ApiSection, AccessSection, GatewaySection, ServerlessSection,
    ProvisionerSection, LeaseSection, LocalDriverSection, KubernetesDriverSettings,
):
    pass
