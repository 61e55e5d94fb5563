"""Drive skiff with the official Python `kubernetes` client (from PyPI).

Run by tests/e2e_python.rs as `python kubernetes_client.py KUBECONFIG`: lists namespaces,
creates a ConfigMap, watches (with timeout_seconds) for ADDED, MODIFIED and DELETED events, and
prints what it saw as one JSON object on the last line of stdout for the Rust test to check.
"""

import json
import sys
import threading
import time

from kubernetes import client, config, watch


def event(ev):
    obj = ev["object"]
    return {
        "type": ev["type"],
        "name": obj.metadata.name,
        "rv": obj.metadata.resource_version,
        "data": obj.data,
    }


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()
    out = {"client_version": __import__("kubernetes").__version__}

    out["server_minor"] = client.VersionApi().get_code().minor
    out["namespaces"] = sorted(ns.metadata.name for ns in v1.list_namespace().items)

    # Create, then watch from the resourceVersion of a list taken before the create: the
    # create arrives as ADDED.
    list_rv = v1.list_namespaced_config_map("default").metadata.resource_version
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}),
        data={"greeting": "hello"},
    )
    created = v1.create_namespaced_config_map("default", cm)
    out["created"] = {
        "name": created.metadata.name,
        "rv": created.metadata.resource_version,
        "uid": created.metadata.uid,
        "data": created.data,
    }
    w = watch.Watch()
    seen = []
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=list_rv, timeout_seconds=5):
        seen.append(event(ev))
        if ev["object"].metadata.name == "py-cm":
            w.stop()
    out["watch_from_list_rv"] = seen

    # A live watch with a label selector: another thread creates, changes and deletes an object
    # while the watch is open.
    def writer():
        time.sleep(0.5)
        live = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-live", labels={"from": "python-live"}), data={"n": "1"})
        v1.create_namespaced_config_map("default", live)
        v1.patch_namespaced_config_map("py-live", "default", {"data": {"n": "2"}})
        v1.delete_namespaced_config_map("py-live", "default")

    now_rv = v1.list_namespaced_config_map("default").metadata.resource_version
    t = threading.Thread(target=writer)
    t.start()
    live_seen = []
    w = watch.Watch()
    for ev in w.stream(
        v1.list_namespaced_config_map,
        "default",
        label_selector="from=python-live",
        resource_version=now_rv,
        timeout_seconds=10,
    ):
        live_seen.append(event(ev))
        if ev["type"] == "DELETED":
            w.stop()
    t.join()
    out["live_watch"] = live_seen

    # A watch on which nothing happens ends by itself after timeout_seconds.
    start = time.time()
    quiet = list(
        watch.Watch().stream(
            v1.list_namespaced_config_map,
            "default",
            label_selector="from=nowhere",
            resource_version=v1.list_namespaced_config_map("default").metadata.resource_version,
            timeout_seconds=1,
        )
    )
    out["quiet_watch"] = {"events": len(quiet), "seconds": time.time() - start}

    # Errors come back as ApiException with the upstream Status.
    try:
        v1.create_namespaced_config_map("default", cm)
        out["conflict"] = None
    except client.ApiException as e:
        out["conflict"] = {"status": e.status, "reason": json.loads(e.body).get("reason")}

    out["listed"] = [c.metadata.name for c in v1.list_namespaced_config_map("default", label_selector="from=python").items]
    v1.delete_namespaced_config_map("py-cm", "default")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
