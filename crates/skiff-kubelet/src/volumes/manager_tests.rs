//! VolumeManager tests that need no API server and no root: emptyDir, hostPath, mounts and
//! teardown with the fake mounter.

use super::mount::FakeMounter;
use super::*;
use serde_json::json;

fn offline_client() -> kube::Client {
    // Nothing listens there; these tests never reach the API.
    let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    host: PathBuf,
    mounter: Arc<FakeMounter>,
    vm: VolumeManager,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    let host = dir.path().join("host");
    fs::create_dir_all(host.join("existing")).unwrap();
    fs::write(host.join("existing/keep.txt"), "precious").unwrap();
    let mounter = Arc::new(FakeMounter::default());
    let vm = VolumeManager::new(&root, offline_client(), "node-1").with_mounter(mounter.clone());
    Fixture { _dir: dir, root, host, mounter, vm }
}

fn pod(host: &Path, volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    let mut vols = vec![
        json!({"name": "scratch", "emptyDir": {}}),
        json!({"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}),
        json!({"name": "host", "hostPath": {"path": host.join("existing"), "type": "Directory"}}),
    ];
    vols.extend(volumes.as_array().cloned().unwrap_or_default());
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
        "spec": {"volumes": vols, "containers": [{"name": "c", "image": "x", "volumeMounts": mounts}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn setup_mounts_and_teardown() {
    let f = fixture();
    let p = pod(
        &f.host,
        json!([]),
        json!([
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)"},
            {"name": "mem", "mountPath": "/mem", "readOnly": true},
            {"name": "host", "mountPath": "/data", "subPath": "sub/dir"},
        ]),
    );
    let vols = f.vm.setup(&p).await.unwrap();
    let scratch = f.root.join("uid-1/volumes/kubernetes.io~empty-dir/scratch");
    assert_eq!(vols.volumes["scratch"].path, scratch);
    assert!(scratch.is_dir());
    let mem = f.root.join("uid-1/volumes/kubernetes.io~empty-dir/mem");
    assert_eq!(*f.mounter.mounted.lock().unwrap(), vec![(mem.clone(), Some(16 << 20))]);
    assert_eq!(vols.volumes["host"].path, f.host.join("existing"));

    let c = &p.spec.as_ref().unwrap().containers[0];
    let env = vec![("POD_NAME".to_string(), "p".to_string())];
    let mounts = f.vm.mounts_for(&p, c, &vols, &env).unwrap();
    let canon = |p: &Path| fs::canonicalize(p).unwrap();
    assert_eq!(mounts.len(), 4);
    assert_eq!(mounts[0], Mount { destination: "/scratch".into(), kind: MountKind::Bind { source: scratch.clone() }, readonly: false });
    assert_eq!(mounts[1].kind, MountKind::Bind { source: canon(&scratch.join("logs/p")) });
    assert!(mounts[2].readonly);
    assert_eq!(mounts[3].kind, MountKind::Bind { source: canon(&f.host.join("existing/sub/dir")) });

    // A container planted a link to the host volume inside its emptyDir: teardown removes
    // the link, not what it points at.
    std::os::unix::fs::symlink(f.host.join("existing"), scratch.join("escape")).unwrap();
    f.vm.teardown("uid-1").await.unwrap();
    assert!(!f.root.join("uid-1").exists(), "pod dir removed");
    assert_eq!(fs::read_to_string(f.host.join("existing/keep.txt")).unwrap(), "precious");
    assert!(f.mounter.mounted.lock().unwrap().is_empty(), "tmpfs unmounted");
    f.vm.teardown("uid-1").await.unwrap();
    assert!(f.vm.teardown("../etc").await.is_err());
}

#[tokio::test]
async fn errors_name_the_volume() {
    let f = fixture();
    let missing = f.host.join("missing");
    let p = pod(
        &f.host,
        json!([
            {"name": "gone", "hostPath": {"path": missing, "type": "Directory"}},
            {"name": "net", "nfs": {"server": "s", "path": "/"}},
        ]),
        json!([{"name": "nope", "mountPath": "/x"}]),
    );
    let err = f.vm.setup(&p).await.unwrap_err();
    let msgs: Vec<String> = err.failures().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        vec![
            format!("MountVolume.SetUp failed for volume \"gone\" : hostPath type check failed: {} is not a directory", missing.display()),
            "MountVolume.SetUp failed for volume \"net\" : volume type nfs is not supported by this node".to_string(),
        ]
    );
    assert!(!missing.exists());
    // The good volumes were still set up; mounting an unknown volume is refused.
    let vols = PodVolumes::default();
    let c = &p.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        f.vm.mounts_for(&p, c, &vols, &[]).unwrap_err().to_string(),
        "cannot find volume \"nope\" to mount into container \"c\""
    );
    f.vm.teardown("uid-1").await.unwrap();
}

#[tokio::test]
async fn subpath_errors() {
    let f = fixture();
    let p = pod(&f.host, json!([]), json!([]));
    let vols = f.vm.setup(&p).await.unwrap();
    let container = |m: serde_json::Value| -> Container { serde_json::from_value(json!({"name": "c", "volumeMounts": [m]})).unwrap() };
    let e = f.vm.mounts_for(&p, &container(json!({"name": "scratch", "mountPath": "/x", "subPath": "../../etc"})), &vols, &[]).unwrap_err();
    assert_eq!(e.to_string(), "failed to prepare subPath for volumeMount \"scratch\" of container \"c\": unable to provision SubPath `../../etc`: must not contain '..'");
    let e = f.vm.mounts_for(&p, &container(json!({"name": "scratch", "mountPath": "/x", "subPathExpr": "$(UNSET)"})), &vols, &[]).unwrap_err();
    assert!(e.to_string().ends_with("missing value for UNSET"), "{e}");
    let scratch = &vols.volumes["scratch"].path;
    std::os::unix::fs::symlink("/etc", scratch.join("etc")).unwrap();
    let e = f.vm.mounts_for(&p, &container(json!({"name": "scratch", "mountPath": "/x", "subPath": "etc"})), &vols, &[]).unwrap_err();
    assert!(e.to_string().contains("not within volume path"), "{e}");
    f.vm.teardown("uid-1").await.unwrap();
    assert!(Path::new("/etc/passwd").exists());
}

#[tokio::test]
async fn usage_reports_sizes() {
    let f = fixture();
    let p = pod(&f.host, json!([]), json!([]));
    let vols = f.vm.setup(&p).await.unwrap();
    fs::write(vols.volumes["scratch"].path.join("f"), vec![0u8; 50_000]).unwrap();
    let usage = f.vm.empty_dir_usage(&p);
    let scratch = usage.iter().find(|u| u.volume == "scratch").unwrap();
    assert!(scratch.usage.bytes >= 50_000 && !scratch.memory);
    let mem = usage.iter().find(|u| u.volume == "mem").unwrap();
    assert_eq!((mem.size_limit, mem.memory), (Some(16 << 20), true));
    f.vm.teardown("uid-1").await.unwrap();
}
