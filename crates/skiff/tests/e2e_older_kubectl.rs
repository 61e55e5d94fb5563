//! End-to-end: the key kubectl workflows again through an older bundled client (1.30, else
//! 1.31), which discovers, applies and patches with older code paths (e.g. OpenAPI v2-era
//! fallbacks, older apply and wait implementations).

mod kubectl_common;

use std::time::Duration;

use kubectl_common::{cluster, heartbeat, kubectl_env, kubectl_version_stdin, older_minor, scratch, write, Background};
use skiff_testkit::Cluster;

struct Old<'a> {
    c: &'a Cluster,
    minor: u32,
}

impl Old<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let out = self.c.kubectl_version(self.minor, args).unwrap();
        assert!(out.status.success(), "kubectl 1.{} {args:?}: {}{}", self.minor, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn fails(&self, args: &[&str]) -> String {
        let out = self.c.kubectl_version(self.minor, args).unwrap();
        assert!(!out.status.success(), "kubectl 1.{} {args:?} unexpectedly succeeded: {}", self.minor, String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
    fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = kubectl_version_stdin(self.c, self.minor, args, stdin);
        assert!(out.status.success(), "kubectl 1.{} {args:?}: {}", self.minor, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n        env:\n        - name: A\n          value: \"1\"\n        - name: B\n          value: \"2\"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 3\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"@hourly\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox\n";

#[test]
fn older_kubectl_apply_kustomize_and_server_side() {
    let c = cluster();
    let k = Old { c: &c, minor: older_minor() };
    let dir = scratch(&c, "old-apply");
    let f = write(&dir, "app.yaml", APP);
    let out = k.ok(&["apply", "-f", &f]);
    for obj in ["deployment.apps/web created", "service/web created", "configmap/cfg created", "horizontalpodautoscaler.autoscaling/web created", "cronjob.batch/tick created"] {
        assert!(out.contains(obj), "{obj}: {out}");
    }
    let f2 = write(&dir, "app2.yaml", &APP.replace("nginx:1.25", "nginx:1.26").replace("        - name: A\n          value: \"1\"\n", ""));
    let out = k.ok(&["apply", "-f", &f2]);
    assert!(out.contains("deployment.apps/web configured") && out.contains("configmap/cfg unchanged"), "{out}");
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"], serde_json::json!([{"name": "B", "value": "2"}]));

    // apply -f DIR and -k.
    let d2 = scratch(&c, "old-dir");
    write(&d2, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: in-dir\n");
    write(&d2, "kustomization.yaml", "resources:\n- a.yaml\nconfigMapGenerator:\n- name: gen\n  literals:\n  - x=y\n");
    let out = k.ok(&["apply", "-k", d2.to_str().unwrap()]);
    let gen = out.lines().find(|l| l.starts_with("configmap/gen-")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(gen.split_whitespace().next().unwrap().len(), "configmap/gen-".len() + 10, "{gen}");
    assert!(out.contains("configmap/in-dir created"), "{out}");
    std::fs::remove_file(d2.join("kustomization.yaml")).unwrap();
    let out = k.ok(&["apply", "-f", d2.to_str().unwrap()]);
    assert!(out.contains("configmap/in-dir unchanged"), "apply -f DIR after apply -k: {out}");

    // Server-side apply: conflict after scale, then --force-conflicts.
    let ssa = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: ssa}\n  template:\n    metadata:\n      labels: {app: ssa}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], ssa);
    k.ok(&["scale", "deploy", "ssa", "--replicas=3"]);
    let out = kubectl_version_stdin(&c, k.minor, &["apply", "--server-side", "-f", "-"], &ssa.replace("replicas: 1", "replicas: 2"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(".spec.replicas"), "{}", String::from_utf8_lossy(&out.stderr));
    k.ok_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &ssa.replace("replicas: 1", "replicas: 2"));
    assert_eq!(k.json(&["get", "deploy", "ssa"])["spec"]["replicas"], 2);

    // generateName and field selectors.
    let out = k.ok_stdin(&["create", "-f", "-", "-o", "name"], r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"old-"}}"#);
    assert!(out.trim().starts_with("configmap/old-") && out.trim().len() == "configmap/old-".len() + 5, "{out}");
    assert_eq!(k.ok(&["get", "cm", "--field-selector", "metadata.name=cfg", "-o", "name"]).trim(), "configmap/cfg");
}

#[test]
fn older_kubectl_create_get_describe_edit_explain() {
    let c = cluster();
    let k = Old { c: &c, minor: older_minor() };
    k.ok(&["create", "namespace", "old"]);
    k.ok(&["create", "secret", "generic", "s", "--from-literal=a=b", "-n", "old"]);
    k.ok(&["create", "secret", "docker-registry", "r", "--docker-server=r.example.com", "--docker-username=u", "--docker-password=p", "-n", "old"]);
    assert_eq!(k.json(&["get", "secret", "r", "-n", "old"])["type"], "kubernetes.io/dockerconfigjson");
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:80", "-n", "old"]);
    let np = k.json(&["get", "svc", "np", "-n", "old"])["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np));
    k.ok(&["create", "deployment", "web", "--image=nginx", "-n", "old"]);
    k.ok(&["expose", "deployment", "web", "--port=80", "-n", "old"]);
    assert_eq!(k.json(&["get", "svc", "web", "-n", "old"])["spec"]["selector"]["app"], "web");
    let e = k.fails(&["create", "service", "nodeport", "np2", "--tcp=80:80", &format!("--node-port={np}"), "-n", "old"]);
    assert!(e.contains("already allocated"), "{e}");

    let all = k.ok(&["get", "all", "-A"]);
    assert!(all.contains("deployment.apps/web") && all.contains("service/np") && all.contains("service/kubernetes"), "{all}");
    k.ok(&["label", "deploy", "web", "-n", "old", "tier=gold"]);
    assert!(k.ok(&["get", "deploy", "-A", "-l", "tier=gold", "--show-labels"]).contains("tier=gold"));

    let uid = k.ok(&["get", "deploy", "web", "-n", "old", "-o", "jsonpath={.metadata.uid}"]);
    k.ok_stdin(&["create", "-f", "-"], &format!(r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"web.1","namespace":"old"}},"involvedObject":{{"apiVersion":"apps/v1","kind":"Deployment","name":"web","namespace":"old","uid":"{uid}"}},"reason":"OldClientEvent","message":"seen by 1.{}","type":"Normal","source":{{"component":"e2e"}},"count":1,"firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z"}}"#, k.minor));
    let out = k.ok(&["describe", "deploy", "web", "-n", "old"]);
    assert!(out.contains("OldClientEvent") && out.contains(&format!("seen by 1.{}", k.minor)), "{out}");

    let out = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("replicas") && out.contains("<integer>"), "{out}");
    let out = k.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("image") && out.contains("<string>"), "{out}");

    let out = kubectl_env(&c, k.minor, &[("KUBE_EDITOR", "sed -i s/tier:\\ gold/tier:\\ silver/")], &["edit", "deploy", "web", "-n", "old"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.json(&["get", "deploy", "web", "-n", "old"])["metadata"]["labels"]["tier"], "silver");

    assert_eq!(k.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
}

#[test]
fn older_kubectl_nodes_wait_watch_and_crd() {
    let c = cluster();
    let k = Old { c: &c, minor: older_minor() };
    k.ok_stdin(&["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"old-node"}}"#);
    k.ok(&["taint", "node", "old-node", "k=v:NoSchedule"]);
    k.ok(&["cordon", "old-node"]);
    let n = k.json(&["get", "node", "old-node"]);
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(n["spec"]["taints"][0]["key"], "k");
    assert!(k.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
    k.ok(&["uncordon", "old-node"]);
    k.ok(&["taint", "node", "old-node", "k-"]);
    assert!(!k.ok(&["get", "nodes"]).contains("SchedulingDisabled"));

    // wait on a status set through the status subresource (a Node: no controller writes it).
    let mut waiter = Background::start(&c, k.minor, "old-wait", &["wait", "node/old-node", "--for=condition=Ready", "--timeout=10s", "-v=6"]);
    waiter.wait_watching(Duration::from_secs(10));
    k.ok(&["patch", "node", "old-node", "--subresource=status", "--type=merge", "-p", &heartbeat(r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok","lastHeartbeatTime":"HEARTBEAT","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#)]);
    assert!(waiter.wait_exit(Duration::from_secs(12)), "{}", waiter.stderr());
    // wait --for=delete with a finalizer.
    k.ok(&["create", "configmap", "held"]);
    k.ok(&["patch", "cm", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/x"]}}"#]);
    k.ok(&["delete", "cm", "held", "--wait=false"]);
    assert!(k.json(&["get", "cm", "held"])["metadata"]["deletionTimestamp"].is_string());
    let mut waiter = Background::start(&c, k.minor, "old-wait-del", &["wait", "cm/held", "--for=delete", "--timeout=10s", "-v=6"]);
    waiter.wait_watching(Duration::from_secs(10));
    k.ok(&["patch", "cm", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    assert!(waiter.wait_exit(Duration::from_secs(12)), "{}", waiter.stderr());

    // get -w.
    let w = Background::start(&c, k.minor, "old-watch", &["get", "cm", "-w", "--output-watch-events", "--request-timeout=20s", "-v=6"]);
    w.wait_watching(Duration::from_secs(10));
    k.ok(&["create", "configmap", "wx"]);
    k.ok(&["label", "cm", "wx", "a=b"]);
    k.ok(&["delete", "cm", "wx"]);
    let out = w.wait_output(Duration::from_secs(10), "DELETED wx", |s| s.lines().any(|l| l.starts_with("DELETED") && l.contains("wx")));
    let evs: Vec<&str> = out.lines().filter(|l| l.split_whitespace().nth(1) == Some("wx")).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(evs, ["ADDED", "MODIFIED", "DELETED"], "{out}");

    // A CRD with printer columns and the scale subresource.
    k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gizmos.example.com"},"spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"gizmos","singular":"gizmo","kind":"Gizmo","shortNames":["gz"]},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"replicas":{"type":"integer"},"mode":{"type":"string"}}},"status":{"type":"object","properties":{"replicas":{"type":"integer"}}}}}},"subresources":{"status":{},"scale":{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas"}},"additionalPrinterColumns":[{"name":"Mode","type":"string","jsonPath":".spec.mode"}]}]}}"#);
    k.ok(&["wait", "crd/gizmos.example.com", "--for=condition=Established", "--timeout=10s"]);
    k.ok_stdin(&["create", "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Gizmo","metadata":{"name":"g"},"spec":{"replicas":1,"mode":"turbo"}}"#);
    let table = k.ok(&["get", "gz"]);
    assert!(table.lines().next().unwrap().contains("MODE") && table.contains("turbo"), "{table}");
    k.ok(&["patch", "gz", "g", "--type=merge", "-p", r#"{"spec":{"mode":"eco"}}"#]);
    k.ok(&["scale", "gz", "g", "--replicas=3"]);
    let g = k.json(&["get", "gz", "g"]);
    assert_eq!(g["spec"]["mode"], "eco");
    assert_eq!(g["spec"]["replicas"], 3);
    k.ok(&["delete", "crd", "gizmos.example.com"]);
    let e = k.fails(&["get", "--raw", "/apis/example.com/v1/namespaces/default/gizmos"]);
    assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
}
