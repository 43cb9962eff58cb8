"""The manager: the REST API (desired state) and the provisioner that makes it real.

- `app.py`          the composition root: broker, subscribers, wiring at start-up, API, loops
- `wiring.py`       `ManagerDeps`, built once NATS is connected: what routes and handlers are given
- `http/`           HTTP in: validates, records desired state in KV, emits events (`deps.py`:
                    the wiring by `Depends`, keys, problems)
- `handlers.py`     NATS in: desired state, node-count requests, wakes, activity
- `outbox.py`       what the manager publishes: lifecycle events, the audit trail
- `transitions.py`  pure record changes: new record, change spec, accept a scale request,
                    hibernate, wake, activity
- `operations.py`   a wake and the API's own activity, shared by HTTP and NATS handlers
- `schemas.py`      the API's request and response bodies, each name pattern once
- `store_index.py`  the manager's store: records plus the name index and idempotency answers
- `quotas.py`       each tenant's claims against its quotas, changed atomically in KV
- `provisioner.py`  the reconcile loop, one cluster at a time under its lease (reads, plans, applies)
- `planning.py`     pure decisions: engine size, the next reconcile step (a cluster's status)
- `drivers/`        adapters that run engines and own draining (`local`: a JVM per node on this
                    machine; `kubernetes`: a namespace per cluster, objects rendered by
                    `kubernetes_manifests` following `kubernetes_rules`)
- `backups.py`, `snapshotter.py`  snapshot decisions (pure) and the pass that applies them
- `control_backup.py`, `control_plane.py`  backups of the platform's own state (NATS): what and
                    when (pure), and taking, scheduling and restoring them
- `render.py`       `python -m services.manager render`: a cluster's manifests for review
"""
