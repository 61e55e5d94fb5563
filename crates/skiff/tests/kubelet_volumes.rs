//! Volumes and env against a real skiff API server (skiff-testkit), with real tmpfs mounts
//! (needs root).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_kubelet::env::{container_env, EnvContext};
use skiff_kubelet::volumes::mount::{HostMounter, Mounter};
use skiff_kubelet::volumes::projected::TokenManager;
use skiff_kubelet::volumes::{service_account_volume, VolumeManager};
use serde_json::json;
use skiff_testkit::Cluster;

const NS: &str = "vol-test";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

async fn client(cluster: &Cluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn create<K>(client: &kube::Client, ns: Option<&str>, v: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    // Namespaced or not, the request is a POST to the collection URL.
    let url = K::url_path(&(), ns);
    let body = serde_json::to_vec(&v).unwrap();
    let req = http::Request::post(url).header("content-type", "application/json").body(body).unwrap();
    client.request::<K>(req).await.unwrap()
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn mounted(p: &Path) -> bool {
    HostMounter.is_mount_point(p).unwrap()
}

fn jwt_claims(token: &str) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    serde_json::from_slice(&claims).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_env_against_api_server() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(&binary()).unwrap()).await.unwrap();
    let client = client(&cluster).await;
    create::<Namespace>(&client, None, json!({"metadata": {"name": NS}})).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    eventually("kube-root-ca.crt", || {
        let cms = cms.clone();
        async move { cms.get_opt("kube-root-ca.crt").await.ok().flatten().is_some() }
    })
    .await;
    create::<ConfigMap>(&client, Some(NS), json!({"metadata": {"name": "app"}, "data": {"a": "v1-a", "b": "v1-b", "1bad": "x"}})).await;
    create::<Secret>(&client, Some(NS), json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2", "user": "admin"}})).await;
    create::<ServiceAccount>(&client, Some(NS), json!({"metadata": {"name": "builder"}})).await;

    // The PV controller binds this claim to the pre-bound hostPath volume.
    let storage = tempfile::tempdir().unwrap();
    let pv_dir = storage.path().join("pv-data");
    create::<PersistentVolume>(&client, None, json!({"metadata": {"name": "vol-test-pv"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": NS, "name": "data"},
        "hostPath": {"path": pv_dir, "type": "DirectoryOrCreate"}}}))
    .await;
    create::<PersistentVolumeClaim>(&client, Some(NS), json!({"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "resources": {"requests": {"storage": "1Gi"}}}}))
    .await;

    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "say \"hi\""}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "builder",
            "containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "64Mi"}},
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "a"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "COMBINED", "value": "$(A)/$(CFG_b)"},
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CFG_"}, {"configMapRef": {"name": "app"}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "cfg", "mountPath": "/a", "subPath": "a"}]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "nested/b", "mode": 0o600}]}},
                {"name": "cfg-all", "configMap": {"name": "app"}},
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "opt", "configMap": {"name": "absent", "optional": true}},
                {"name": "down", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
                {"name": "proj", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
                    {"configMap": {"name": "app", "items": [{"key": "a", "path": "cm-a"}]}},
                    {"secret": {"name": "creds", "items": [{"key": "user", "path": "user"}]}},
                    {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
    }))
    .unwrap();
    // What admission would add (skiff's admission does not do it itself).
    let (sa_vol, sa_mount) = service_account_volume(&pod).unwrap();
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes.as_mut().unwrap().push(sa_vol.clone());
    spec.containers[0].volume_mounts.as_mut().unwrap().push(sa_mount);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = pod.metadata.uid.clone().unwrap();

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    eventually("claim bound", || {
        let pvcs = pvcs.clone();
        async move { pvcs.get("data").await.ok().and_then(|c| c.status?.phase).as_deref() == Some("Bound") }
    })
    .await;

    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().join("agent/pods");
    let offset = Arc::new(AtomicI64::new(0));
    let clock_offset = offset.clone();
    let tokens = TokenManager::with_clock(Arc::new(move || chrono::Utc::now().timestamp() + clock_offset.load(Ordering::SeqCst)));
    let vm = VolumeManager::new(&root, client.clone(), "node-1").with_token_manager(tokens);
    vm.set_node_allocatable(BTreeMap::from([("memory".to_string(), Quantity("8Gi".into()))]));

    let result = std::panic::AssertUnwindSafe(check_volumes(&vm, &client, &pod, &uid, &root, &pv_dir, &sa_vol.name, &offset));
    let outcome = futures_catch(result).await;
    // Clean up mounts whatever happened.
    vm.teardown(&uid).await.unwrap();
    let pod_dir = root.join(&uid);
    assert!(!pod_dir.exists(), "pod dir removed");
    for plugin in ["kubernetes.io~secret", "kubernetes.io~projected", "kubernetes.io~downward-api", "kubernetes.io~empty-dir"] {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(&format!("{}/", pod_dir.join("volumes").join(plugin).display())), "{plugin} unmounted");
    }
    assert_eq!(fs::read_to_string(pv_dir.join("kept")).unwrap(), "pv data", "PV contents survive teardown");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    drop(cluster);
}

async fn futures_catch<F: std::future::Future<Output = ()>>(f: std::panic::AssertUnwindSafe<F>) -> std::thread::Result<()> {
    use futures::FutureExt;
    f.catch_unwind().await
}

#[allow(clippy::too_many_arguments)]
async fn check_volumes(vm: &VolumeManager, client: &kube::Client, pod: &Pod, uid: &str, root: &Path, pv_dir: &Path, sa_vol: &str, offset: &AtomicI64) {
    let vols = vm.setup(pod).await.unwrap();
    let vdir = |plugin: &str, name: &str| root.join(uid).join("volumes").join(plugin).join(name);

    // configMap with items, paths and modes; atomic-writer layout; on disk, not tmpfs.
    let cfg = vdir("kubernetes.io~configmap", "cfg");
    assert_eq!(vols.volumes["cfg"].path, cfg);
    assert_eq!(fs::read_to_string(cfg.join("a")).unwrap(), "v1-a");
    assert_eq!(fs::read_to_string(cfg.join("nested/b")).unwrap(), "v1-b");
    assert_eq!(mode(&cfg.join("nested/b")), 0o600);
    assert_eq!(mode(&cfg.join("a")), 0o644);
    assert_eq!(fs::read_link(cfg.join("a")).unwrap(), Path::new("..data/a"));
    assert!(!mounted(&cfg), "configMap volumes live on disk");
    let cfg_all = vdir("kubernetes.io~configmap", "cfg-all");
    assert_eq!(fs::read_to_string(cfg_all.join("1bad")).unwrap(), "x", "every key is a file");

    // secret: tmpfs, defaultMode.
    let sec = vdir("kubernetes.io~secret", "sec");
    assert!(mounted(&sec), "secret volume is a tmpfs");
    assert_eq!(fs::read_to_string(sec.join("password")).unwrap(), "hunter2");
    assert_eq!(mode(&sec.join("password")), 0o400);
    assert!(vols.volumes["sec"].read_only);
    assert!(fs::read_dir(vdir("kubernetes.io~configmap", "opt")).unwrap().all(|e| e.unwrap().file_name().to_string_lossy().starts_with("..")), "optional missing configMap is empty");

    // downwardAPI.
    let down = vdir("kubernetes.io~downward-api", "down");
    assert!(mounted(&down));
    assert_eq!(fs::read_to_string(down.join("labels")).unwrap(), "app=\"web\"\ntier=\"front\"");
    assert_eq!(fs::read_to_string(down.join("annotations")).unwrap(), "note=\"say \\\"hi\\\"\"");
    assert_eq!(fs::read_to_string(down.join("mem")).unwrap(), "64");

    // projected: a bound token for the audience, plus the other sources.
    let proj = vdir("kubernetes.io~projected", "proj");
    assert!(mounted(&proj));
    let token = fs::read_to_string(proj.join("token")).unwrap();
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["sub"], format!("system:serviceaccount:{NS}:builder"));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid);
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 3600);
    assert_eq!(fs::read_to_string(proj.join("cm-a")).unwrap(), "v1-a");
    assert_eq!(fs::read_to_string(proj.join("user")).unwrap(), "admin");
    assert_eq!(fs::read_to_string(proj.join("name")).unwrap(), "web");

    // The admission-style kube-api-access volume.
    let sa = vdir("kubernetes.io~projected", sa_vol);
    let sa_token = fs::read_to_string(sa.join("token")).unwrap();
    assert_eq!(jwt_claims(&sa_token)["exp"].as_i64().unwrap() - jwt_claims(&sa_token)["iat"].as_i64().unwrap(), 3607);
    assert!(fs::read_to_string(sa.join("ca.crt")).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(fs::read_to_string(sa.join("namespace")).unwrap(), NS);

    // emptyDir Memory with its size limit; the PVC resolves to the PV's host path.
    let mem = vdir("kubernetes.io~empty-dir", "mem");
    assert!(mounted(&mem));
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.contains(&format!(" {} ", mem.display()))).unwrap();
    assert!(line.contains("size=8192k"), "tmpfs size limit: {line}");
    assert_eq!(vols.volumes["data"].path, pv_dir);
    assert!(pv_dir.is_dir(), "DirectoryOrCreate PV created");
    fs::write(pv_dir.join("kept"), "pv data").unwrap();

    // Mounts for the container: subPath into the configMap pins a version.
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let services: Vec<Service> = Api::<Service>::all(client.clone()).list(&ListParams::default()).await.unwrap().items;
    let alloc = BTreeMap::new();
    let ctx = EnvContext { services: &services, pod_ips: &["10.42.0.7".to_string()], host_ips: &[], node_allocatable: &alloc };
    let env = container_env(client, pod, c, &ctx).await.unwrap();
    let envm: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(envm["A"], "v1-a");
    assert_eq!(envm["PW"], "hunter2");
    assert_eq!(envm["COMBINED"], "v1-a/v1-b");
    assert_eq!(envm["NAME"], "web");
    assert!(!envm.contains_key("1bad"), "invalid name skipped");
    assert_eq!(envm["CFG_1bad"], "x");
    assert_eq!(envm["b"], "v1-b");
    assert!(envm.contains_key("KUBERNETES_SERVICE_HOST"), "kubernetes service variables: {envm:?}");
    let mounts = vm.mounts_for(pod, c, &vols, &env).unwrap();
    assert_eq!(mounts.len(), 3);

    // Missing references give kubelet's texts.
    let mut bad = c.clone();
    bad.env = Some(serde_json::from_value(json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "zzz"}}}])).unwrap());
    bad.env_from = None;
    assert_eq!(container_env(client, pod, &bad, &ctx).await.unwrap_err().to_string(), format!("couldn't find key zzz in ConfigMap {NS}/app"));
    bad.env = Some(serde_json::from_value(json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}])).unwrap());
    assert_eq!(container_env(client, pod, &bad, &ctx).await.unwrap_err().to_string(), "secret \"nope\" not found");
    let mut missing = pod.clone();
    missing.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(json!([{"name": "m", "configMap": {"name": "nope"}}])).unwrap());
    assert_eq!(vm.setup(&missing).await.unwrap_err().to_string(), "MountVolume.SetUp failed for volume \"m\" : configmap \"nope\" not found");

    // An update reaches the files atomically; readers never see a mix of versions.
    let data_before = fs::read_link(cfg.join("..data")).unwrap();
    vm.refresh(pod).await.unwrap();
    assert_eq!(fs::read_link(cfg.join("..data")).unwrap(), data_before, "no change, no new version");
    assert_eq!(fs::read_to_string(proj.join("token")).unwrap(), token, "token reused before 80% of its life");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, cfg) = (stop.clone(), cfg.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(ts) = fs::read_link(cfg.join("..data")) {
                    let ts = cfg.join(ts);
                    if let (Ok(a), Ok(b)) = (fs::read_to_string(ts.join("a")), fs::read_to_string(ts.join("nested/b"))) {
                        assert_eq!(a[..2], b[..2], "one version: {a} {b}");
                        seen.insert(a[..2].to_string());
                    }
                }
            }
            seen
        })
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.patch("app", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "v2-a", "b": "v2-b"}}))).await.unwrap();
    vm.refresh(pod).await.unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(seen.contains("v2"), "reader saw the update: {seen:?}");
    assert_eq!(fs::read_to_string(cfg.join("a")).unwrap(), "v2-a");
    assert_eq!(fs::read_to_string(proj.join("cm-a")).unwrap(), "v2-a");
    assert_ne!(fs::read_link(cfg.join("..data")).unwrap(), data_before);
    let versions = fs::read_dir(&cfg).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("..20")).count();
    assert_eq!(versions, 1, "old version removed");
    // A key removed from the object disappears from a volume without items.
    cms.patch("app", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(json!([{"op": "remove", "path": "/data/1bad"}])).unwrap())).await.unwrap();
    vm.refresh(pod).await.unwrap();
    assert!(fs::symlink_metadata(cfg_all.join("1bad")).is_err());
    assert_eq!(fs::read_to_string(cfg_all.join("a")).unwrap(), "v2-a");

    // Labels changed: the downward API file follows on refresh.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let updated = pods.patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "back"}}}))).await.unwrap();
    vm.refresh(&updated).await.unwrap();
    assert_eq!(fs::read_to_string(down.join("labels")).unwrap(), "app=\"web\"\ntier=\"back\"");

    // 50 minutes later (past 80% of the hour) the token is rotated.
    offset.store(3000, Ordering::SeqCst);
    vm.refresh(&updated).await.unwrap();
    let rotated = fs::read_to_string(proj.join("token")).unwrap();
    assert_ne!(rotated, token, "token rotated");
    assert_eq!(jwt_claims(&rotated)["kubernetes.io"]["pod"]["uid"], uid);
}
