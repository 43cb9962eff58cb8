"""What `ess clusters events` says of each event: the decision or change, then its reason."""

from cli.output import event_text


def test_a_scaling_decision_says_the_count_the_replicas_and_why():
    event = {"kind": "plan", "nodes": 2, "current_nodes": 1, "replicas": {"books": 1}, "splits": {},
             "reason": "more than 10 searches or writes queued on a node (22 queued) for 5 samples"}
    assert event_text(event) == ("nodes 1 -> 2, books 1 replica(s): more than 10 searches or writes queued on a "
                                 "node (22 queued) for 5 samples")


def test_a_decision_to_change_nothing_says_why_too():
    event = {"kind": "plan", "nodes": 1, "current_nodes": 1, "replicas": {}, "splits": {},
             "reason": "no searches or writes in the last 5 samples: nothing to scale out for"}
    assert event_text(event) == "nodes kept at 1: no searches or writes in the last 5 samples: nothing to scale out for"


def test_requests_actions_and_statuses_read_as_sentences():
    assert event_text({"kind": "scale", "nodes": 2, "reason": "load"}) == "2 node(s) asked of the platform: load"
    assert event_text({"kind": "action", "action": "scale_out", "outcome": "done", "detail": "2 node(s)"}) == \
        "scale_out done: 2 node(s)"
    assert event_text({"kind": "status", "status": "ready", "reason": "engine healthy with 2 node(s)"}) == \
        "ready: engine healthy with 2 node(s)"
    assert event_text({"kind": "desired", "change": "updated"}) == "desired state updated"
