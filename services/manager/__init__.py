"""The manager: the REST API (desired state) and the provisioner that makes it real.

- `api.py`          HTTP in: validates, records desired state in KV, emits events
- `schemas.py`      the API's request and response bodies
- `provisioner.py`  event handler and reconcile loop (reads, plans, applies)
- `planning.py`     pure decisions: engine size, the next reconcile step
- `drivers/`        adapters that run engines (`local`: JVMs on this machine; `kubernetes`:
                    a namespace per cluster, rendered by `kubernetes_manifests`)
- `render.py`       `python -m services.manager render`: a cluster's manifests for review
- `app.py`          wiring: settings, broker, store, driver, API
"""
