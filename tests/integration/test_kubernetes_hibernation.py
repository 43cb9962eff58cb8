"""Hibernation on the kubernetes driver: the StatefulSet goes to 0 replicas with its volume
claims kept, no pod runs, and `start` brings the nodes back on the same claims."""

from __future__ import annotations

from tests.integration.test_kubernetes_driver import (  # noqa: F401  (fixtures)
    NS, STATEFULSETS, api_server, driver, engine, record, roll_out,
)


async def test_hibernate_scales_to_zero_keeps_the_claims_and_start_wakes_it(driver, api_server):
    cluster = record(replicas=2)
    size = driver.size_for(cluster.spec)
    await driver.start(cluster, size)
    roll_out(api_server)
    assert (await driver.observe(cluster.id)).running
    claims = api_server.live(STATEFULSETS, NS, "engine")["spec"]["volumeClaimTemplates"]

    await driver.hibernate(cluster)
    asleep = api_server.live(STATEFULSETS, NS, "engine")
    assert asleep["spec"]["replicas"] == 0 and asleep["spec"]["volumeClaimTemplates"] == claims
    roll_out(api_server)  # the controller removed the pods
    assert not (await driver.observe(cluster.id)).running  # nothing runs: the provisioner marks it hibernated

    await driver.start(cluster, size)
    awake = api_server.live(STATEFULSETS, NS, "engine")
    assert awake["spec"]["replicas"] == 2 and awake["spec"]["volumeClaimTemplates"] == claims
