"""The manager: the REST API (desired state) and the provisioner that makes it real.

- `api.py`, `tenant_api.py`  HTTP in: validates, records desired state in KV, emits events
- `schemas.py`      the API's request and response bodies
- `quotas.py`       each tenant's claims against its quotas, changed atomically in KV
- `provisioner.py`  the reconcile loop, one cluster at a time under its lease (reads, plans, applies)
- `planning.py`     pure decisions: engine size, the next reconcile step (a cluster's status)
- `drivers/`        adapters that run engines and own draining (`local`: a JVM per node on this
                    machine; `kubernetes`: a namespace per cluster, objects rendered by
                    `kubernetes_manifests` following `kubernetes_rules`)
- `render.py`       `python -m services.manager render`: a cluster's manifests for review
- `app.py`          wiring: settings, broker, store, driver, leases, API, NATS handlers
"""
