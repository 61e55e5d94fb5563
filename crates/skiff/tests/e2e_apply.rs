//! End-to-end, real kubectl: `apply` in its forms (multi-document file and re-apply through
//! strategic merge, directory, kustomize, server-side with conflicts) and `create` with
//! generateName.

mod kubectl_common;

use kubectl_common::{cluster, fails_stdin, ok_stdin, scratch, write};

const MULTI: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: prod
        - name: DEBUG
          value: "false"
        - name: REGION
          value: eu
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
type: Opaque
data:
  password: czNjcmV0
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 80
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: once
        image: busybox
        command: ["true"]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: nightly
            image: busybox
            command: ["true"]
"#;

const KINDS: [&str; 9] = [
    "deployment.apps/web",
    "service/web",
    "configmap/web-config",
    "secret/web-secret",
    "ingress.networking.k8s.io/web",
    "horizontalpodautoscaler.autoscaling/web",
    "persistentvolumeclaim/data",
    "job.batch/once",
    "cronjob.batch/nightly",
];

#[test]
fn apply_multi_document_file_then_reapply_changed_file() {
    let c = cluster();
    let dir = scratch(&c, "multi");
    let file = write(&dir, "app.yaml", MULTI);
    let out = c.ok(&["apply", "-f", &file]).unwrap();
    for k in KINDS {
        assert!(out.contains(&format!("{k} created")), "{k} not created:\n{out}");
    }
    let names = c.ok(&["get", "deploy,svc,cm,secret,ing,hpa,pvc,job,cronjob", "-o", "name"]).unwrap();
    for k in KINDS {
        assert!(names.lines().any(|l| l == k), "{k} missing from:\n{names}");
    }

    // What the server made of each document.
    let svc = c.json(&["get", "svc", "web"]).unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    let np = svc["spec"]["ports"][0]["nodePort"].as_i64().expect("nodePort allocated");
    assert!((30000..=32767).contains(&np), "nodePort {np}");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43."), "clusterIP {ip}");
    assert_eq!(c.json(&["get", "secret", "web-secret"]).unwrap()["data"]["password"], "czNjcmV0");
    let hpa = c.json(&["get", "hpa", "web"]).unwrap();
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
    let pvc = c.json(&["get", "pvc", "data"]).unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(c.json(&["get", "ing", "web"]).unwrap()["spec"]["rules"][0]["host"], "web.example.com");
    let cj = c.json(&["get", "cronjob", "nightly"]).unwrap();
    assert_eq!(cj["spec"]["schedule"], "0 3 * * *");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    let job = c.json(&["get", "job", "once"]).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    // A change made outside the file (a label) must survive the re-apply.
    c.ok(&["label", "deploy", "web", "touched=by-hand"]).unwrap();

    // Re-apply with a new image and the DEBUG env var (a middle list element) removed.
    let changed = MULTI.replace("nginx:1.25", "nginx:1.26").replace("        - name: DEBUG\n          value: \"false\"\n", "");
    assert_ne!(changed, MULTI);
    let file2 = write(&dir, "app2.yaml", &changed);
    let out = c.ok(&["apply", "-f", &file2]).unwrap();
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/web-config unchanged") && out.contains("cronjob.batch/nightly unchanged"), "{out}");
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    let ctr = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["image"], "nginx:1.26");
    let env: Vec<&str> = ctr["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, ["MODE", "REGION"], "DEBUG removed by strategic merge, order kept");
    assert_eq!(ctr["ports"][0]["containerPort"], 80);
    assert_eq!(d["metadata"]["labels"]["touched"], "by-hand");
    assert_eq!(d["metadata"]["generation"], 2);
    // The service keeps its allocated nodePort across re-apply.
    assert_eq!(c.json(&["get", "svc", "web"]).unwrap()["spec"]["ports"][0]["nodePort"].as_i64(), Some(np));

    // A third apply of the same file changes nothing.
    let out = c.ok(&["apply", "-f", &file2]).unwrap();
    assert!(!out.contains("configured"), "{out}");
    assert_eq!(c.json(&["get", "deploy", "web"]).unwrap()["metadata"]["generation"], 2);

    // Removing a whole document's field (the REGION env var too) and a container port.
    let third = changed.replace("        - name: REGION\n          value: eu\n", "");
    let file3 = write(&dir, "app3.yaml", &third);
    c.ok(&["apply", "-f", &file3]).unwrap();
    let env = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]).unwrap();
    assert_eq!(env, "MODE");

    // `delete -f` removes everything in the file.
    c.ok(&["delete", "-f", &file3]).unwrap();
    let left = c.ok(&["get", "deploy,cm,ing,hpa,pvc,cronjob", "-o", "name"]).unwrap();
    // (kube-root-ca.crt is published into every namespace by a controller.)
    assert!(left.lines().all(|l| l == "configmap/kube-root-ca.crt"), "{left}");
}

#[test]
fn secret_string_data_is_merged_into_data() {
    let c = cluster();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: s3cret\ndata:\n  user: YWRtaW4=\n";
    ok_stdin(&c, &["apply", "-f", "-"], secret);
    let s = c.json(&["get", "secret", "s"]).unwrap();
    assert_eq!(s["data"]["password"], "czNjcmV0");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert!(s.get("stringData").is_none(), "stringData is write-only: {s}");
    let table = c.ok(&["get", "secret", "s"]).unwrap();
    assert!(table.lines().nth(1).unwrap().split_whitespace().nth(2) == Some("2"), "DATA column:\n{table}");
}

#[test]
fn job_gets_generated_selector_and_labels() {
    let c = cluster();
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: busybox\n";
    ok_stdin(&c, &["create", "-f", "-"], job);
    let j = c.json(&["get", "job", "pi"]).unwrap();
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid, "{j}");
    let labels = &j["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
    assert_eq!(labels["job-name"], "pi");
    assert_eq!(j["spec"]["manualSelector"], false);
}

#[test]
fn hpa_is_served_converted_in_autoscaling_v1() {
    let c = cluster();
    let dir = scratch(&c, "hpa");
    let file = write(&dir, "app.yaml", MULTI);
    c.ok(&["apply", "-f", &file]).unwrap();
    let v1: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web"]).unwrap()).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80, "{v1}");
    assert!(v1["spec"].get("metrics").is_none(), "{v1}");
}

#[test]
fn apply_directory() {
    let c = cluster();
    let dir = scratch(&c, "dir");
    write(&dir, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: \"1\"\n");
    write(&dir, "b.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-json"},"data":{"b":"2"}}"#);
    write(&dir, "c.yml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-dir\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: in-ns\n  namespace: from-dir\ndata:\n  c: \"3\"\n");
    write(&dir, "sub/d.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nested\n");
    write(&dir, "notes.txt", "not a manifest");
    let d = dir.to_str().unwrap();
    let out = c.ok(&["apply", "-f", d]).unwrap();
    for k in ["configmap/from-yaml created", "configmap/from-json created", "namespace/from-dir created", "configmap/in-ns created"] {
        assert!(out.contains(k), "{k} missing:\n{out}");
    }
    assert!(!out.contains("nested"), "not recursive without -R:\n{out}");
    assert_eq!(c.json(&["get", "cm", "from-json"]).unwrap()["data"]["b"], "2");
    assert_eq!(c.json(&["get", "cm", "in-ns", "-n", "from-dir"]).unwrap()["data"]["c"], "3");
    let out = c.ok(&["apply", "-R", "-f", d]).unwrap();
    assert!(out.contains("configmap/nested created") && out.contains("configmap/from-yaml unchanged"), "{out}");
}

#[test]
fn apply_kustomize_with_config_map_generator() {
    let c = cluster();
    let dir = scratch(&c, "kust");
    write(
        &dir,
        "kustomization.yaml",
        "namespace: kapp\nresources:\n- ns.yaml\n- deploy.yaml\ncommonLabels:\n  team: blue\nconfigMapGenerator:\n- name: app-config\n  literals:\n  - color=blue\n  - size=large\n",
    );
    write(&dir, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kapp\n");
    write(
        &dir,
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kapp\nspec:\n  selector:\n    matchLabels: {app: kapp}\n  template:\n    metadata:\n      labels: {app: kapp}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n        envFrom:\n        - configMapRef:\n            name: app-config\n",
    );
    let d = dir.to_str().unwrap();
    let out = c.ok(&["apply", "-k", d]).unwrap();
    let cm_line = out.lines().find(|l| l.starts_with("configmap/app-config-")).unwrap_or_else(|| panic!("{out}"));
    let name = cm_line.split_whitespace().next().unwrap().trim_start_matches("configmap/").to_string();
    let hash = name.trim_start_matches("app-config-");
    assert_eq!(hash.len(), 10, "kustomize hash suffix in {name}");
    assert!(hash.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()), "{name}");
    let cm = c.json(&["get", "cm", &name, "-n", "kapp"]).unwrap();
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(cm["data"]["size"], "large");
    assert_eq!(cm["metadata"]["labels"]["team"], "blue");
    let d_obj = c.json(&["get", "deploy", "kapp", "-n", "kapp"]).unwrap();
    assert_eq!(d_obj["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"], name.as_str(), "reference rewritten to the hashed name");
    assert_eq!(d_obj["spec"]["selector"]["matchLabels"]["team"], "blue");

    // Changing a literal makes a new hashed ConfigMap and repoints the deployment.
    write(
        &dir,
        "kustomization.yaml",
        "namespace: kapp\nresources:\n- ns.yaml\n- deploy.yaml\ncommonLabels:\n  team: blue\nconfigMapGenerator:\n- name: app-config\n  literals:\n  - color=green\n  - size=large\n",
    );
    c.ok(&["apply", "-k", d]).unwrap();
    let d_obj = c.json(&["get", "deploy", "kapp", "-n", "kapp"]).unwrap();
    let new_name = d_obj["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"].as_str().unwrap().to_string();
    assert_ne!(new_name, name);
    assert_eq!(c.json(&["get", "cm", &new_name, "-n", "kapp"]).unwrap()["data"]["color"], "green");
    assert_eq!(d_obj["metadata"]["generation"], 2);
}

const SSA: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: ssa}\n  template:\n    metadata:\n      labels: {app: ssa}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1\n";

#[test]
fn server_side_apply_conflict_and_force_conflicts() {
    let c = cluster();
    let dir = scratch(&c, "ssa");
    let file = write(&dir, "ssa.yaml", SSA);
    let out = c.ok(&["apply", "--server-side", "-f", &file]).unwrap();
    assert!(out.contains("deployment.apps/ssa serverside-applied"), "{out}");
    let d = c.json(&["get", "deploy", "ssa", "--show-managed-fields"]).unwrap();
    let mf = d["metadata"]["managedFields"].as_array().unwrap();
    assert!(mf.iter().any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"), "{mf:?}");
    assert!(d["metadata"]["annotations"].get("kubectl.kubernetes.io/last-applied-configuration").is_none());

    // Another manager takes spec.replicas.
    c.ok(&["scale", "deploy", "ssa", "--replicas=4"]).unwrap();
    let changed = SSA.replace("busybox:1", "busybox:2");
    let file2 = write(&dir, "ssa2.yaml", &changed);
    let e = c.fails(&["apply", "--server-side", "-f", &file2]).unwrap();
    assert!(e.contains("conflict") && e.contains(".spec.replicas"), "{e}");
    // The refused apply changed nothing.
    let d = c.json(&["get", "deploy", "ssa"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1");

    // Without the conflicting field the apply goes through and leaves replicas alone.
    let no_replicas = changed.replace("  replicas: 2\n", "");
    let file3 = write(&dir, "ssa3.yaml", &no_replicas);
    c.ok(&["apply", "--server-side", "-f", &file3]).unwrap();
    let d = c.json(&["get", "deploy", "ssa"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:2");

    // --force-conflicts takes the field back.
    c.ok(&["scale", "deploy", "ssa", "--replicas=5"]).unwrap();
    let file4 = write(&dir, "ssa4.yaml", &changed.replace("replicas: 2", "replicas: 3"));
    let e = c.fails(&["apply", "--server-side", "-f", &file4]).unwrap();
    assert!(e.contains(".spec.replicas"), "{e}");
    let out = c.ok(&["apply", "--server-side", "--force-conflicts", "-f", &file4]).unwrap();
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.json(&["get", "deploy", "ssa", "--show-managed-fields"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let mf = d["metadata"]["managedFields"].as_array().unwrap();
    let apply = mf.iter().find(|m| m["operation"] == "Apply").unwrap();
    assert!(apply["fieldsV1"]["f:spec"].get("f:replicas").is_some(), "apply manager owns replicas again: {mf:?}");
    for m in mf.iter().filter(|m| m["operation"] == "Update") {
        assert!(m["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "the scale manager lost replicas: {mf:?}");
    }

    // A second field manager applying a different value conflicts too, on a ConfigMap.
    ok_stdin(&c, &["apply", "--server-side", "--field-manager=alice", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  k: alice\n");
    let e = fails_stdin(&c, &["apply", "--server-side", "--field-manager=bob", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  k: bob\n");
    assert!(e.contains("conflict") && e.contains("alice") && e.contains(".data.k"), "{e}");
    ok_stdin(&c, &["apply", "--server-side", "--field-manager=bob", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  k: alice\n  other: bob\n");
    let cm = c.json(&["get", "cm", "shared"]).unwrap();
    assert_eq!(cm["data"]["k"], "alice");
    assert_eq!(cm["data"]["other"], "bob");
}

#[test]
fn create_with_generate_name() {
    let c = cluster();
    let obj = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"gen-","labels":{"made":"gen"}},"data":{"a":"1"}}"#;
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = ok_stdin(&c, &["create", "-f", "-", "-o", "name"], obj);
        names.push(out.trim().trim_start_matches("configmap/").to_string());
    }
    for n in &names {
        assert!(n.starts_with("gen-") && n.len() == 9, "generated name {n}");
        assert!(n[4..].chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()), "{n}");
        let cm = c.json(&["get", "cm", n]).unwrap();
        assert_eq!(cm["metadata"]["generateName"], "gen-");
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "distinct names");
    let listed = c.ok(&["get", "cm", "-l", "made=gen", "-o", "name"]).unwrap();
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // Pods and deployments work the same way.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"worker-"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let out = ok_stdin(&c, &["create", "-f", "-", "-o", "name"], pod);
    assert!(out.trim().starts_with("pod/worker-"), "{out}");
}

#[test]
fn unknown_fields_are_refused_or_dropped() {
    let c = cluster();
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict"},"data":{"a":"1"},"junk":1}"#;
    let e = fails_stdin(&c, &["create", "-f", "-"], cm);
    assert!(e.contains("strict decoding error") && e.contains("unknown field \"junk\""), "{e}");
    let deploy = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","junk":1}]}}}}"#;
    let e = fails_stdin(&c, &["apply", "-f", "-"], deploy);
    assert!(e.contains("unknown field \"spec.template.spec.containers[0].junk\""), "{e}");
    // Without strict validation the object is created and the field dropped.
    ok_stdin(&c, &["apply", "--validate=false", "-f", "-"], deploy);
    let d = c.json(&["get", "deploy", "d"]).unwrap();
    assert!(d["spec"]["template"]["spec"]["containers"][0].get("junk").is_none(), "{d}");
    let out = c.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], cm).unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown field \"junk\""), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(c.json(&["get", "cm", "strict"]).unwrap().get("junk").is_none());
    // Patches: kubectl patch sends no fieldValidation, so the server's default (Warn) applies:
    // the unknown field is reported and dropped, the rest of the patch lands. Merge, JSON and
    // strategic merge patches alike.
    let patches: [(&str, &str); 3] = [
        ("merge", r#"{"data":{"b":"2"},"junk":1}"#),
        ("json", r#"[{"op":"add","path":"/junk2","value":1},{"op":"add","path":"/data/c","value":"3"}]"#),
        ("strategic", r#"{"data":{"d":"4"},"metadata":{"junk3":true}}"#),
    ];
    for (kind, patch) in patches {
        let out = c.kubectl(&["patch", "cm", "strict", "--type", kind, "-p", patch]).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{kind}: {stderr}");
        assert!(stderr.contains("unknown field"), "{kind} patch warns: {stderr}");
    }
    let cm = c.json(&["get", "cm", "strict"]).unwrap();
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "2", "c": "3", "d": "4"}), "{cm}");
    assert!(cm.get("junk").is_none() && cm.get("junk2").is_none() && cm["metadata"].get("junk3").is_none(), "{cm}");
    let out = c.kubectl(&["patch", "deploy", "d", "--type", "merge", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"i2","junk":1}]}}}}"#]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"spec.template.spec.containers[0].junk\""), "{}", String::from_utf8_lossy(&out.stderr));
    let d = c.json(&["get", "deploy", "d"]).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "i2");
    assert!(d["spec"]["template"]["spec"]["containers"][0].get("junk").is_none(), "{d}");
}

#[test]
fn server_side_apply_takes_over_from_client_side_apply() {
    let c = cluster();
    ok_stdin(&c, &["apply", "-f", "-"], SSA);
    let out = ok_stdin(&c, &["apply", "--server-side", "-f", "-"], &SSA.replace("busybox:1", "busybox:2"));
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.json(&["get", "deploy", "ssa", "--show-managed-fields"]).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:2");
    let mf = d["metadata"]["managedFields"].as_array().unwrap();
    let apply = mf.iter().find(|m| m["manager"] == "kubectl" && m["operation"] == "Apply").expect("kubectl Apply manager");
    assert!(apply["fieldsV1"]["f:spec"].get("f:replicas").is_some(), "{mf:?}");
}
