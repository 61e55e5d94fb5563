//! Pulls over the OCI distribution API, against Debian's `docker-registry` and a small fake
//! registry, all on loopback: plain HTTP for registries configured insecure, digests,
//! indexes, 404s, basic and bearer auth, corrupt blobs, mirrors and concurrent pulls.
//! Needs root (layers are unpacked with their owners, containers are run) and, for most
//! tests, the `docker-registry` package; each test says SKIP and passes otherwise.

mod common;
mod registry_util;

use std::time::Duration;

use common::*;
use registry_util::*;
use skiff_runtime::image::registry::RegistryAuth;
use skiff_runtime::runtime::{ContainerConfig, LoopbackOnly, Phase};
use skiff_runtime::shim::client::ShimProgram;
use skiff_runtime::{Error, LocalRuntime, Runtime, RuntimeConfig};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: registry tests need root");
    false
}

/// A runtime whose root is `<scratch>/data/agent/runtime`, as skiff lays it out, so that
/// `<scratch>/data/registries.yaml` is the file it reads.
fn runtime(test: &str) -> TestRuntime {
    let scratch = Scratch::new(&format!("reg-{test}"));
    let (_, root) = data_dirs(&scratch.0);
    let cgroup_parent = format!("/skiff-test-reg-{test}-{}", std::process::id());
    let cfg = RuntimeConfig {
        state: root.clone(),
        root,
        shim: ShimProgram {
            program: env!("CARGO_BIN_EXE_skiff-runtime-dev").into(),
            prefix: vec!["shim".into()],
        },
        cgroup_parent: cgroup_parent.clone(),
    };
    let rt = LocalRuntime::new(cfg, std::sync::Arc::new(LoopbackOnly)).unwrap();
    TestRuntime {
        rt,
        cgroup_parent,
        scratch,
    }
}

fn write_registries(t: &TestRuntime, yaml: &str) {
    std::fs::write(t.scratch.path("data/registries.yaml"), yaml).unwrap();
}

/// registries.yaml marking `host` as a plain-HTTP registry (k3s: an `http://` endpoint).
fn insecure(host: &str) -> String {
    format!("mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n")
}

/// Asserts that the store holds nothing: no image, blob, snapshot or staging leftovers.
fn assert_store_empty(t: &TestRuntime) {
    assert!(t.rt.list_images().unwrap().is_empty());
    let dir = t.rt.images().dir().to_path_buf();
    for sub in ["blobs/sha256", "snapshots", "ingest"] {
        let n = std::fs::read_dir(dir.join(sub)).unwrap().count();
        assert_eq!(n, 0, "{sub} is not empty");
    }
}

fn busybox_image() -> TestImage {
    image(&[busybox_layer()], &["sh"], "amd64", None)
}

#[test]
fn anonymous_pull_over_plain_http_then_run_a_container() {
    if !is_root() {
        return;
    }
    let t = runtime("anon");
    let Some(reg) = DockerRegistry::start(&t.scratch.path("registry"), None) else {
        return;
    };
    let img = busybox_image();
    push_image(&reg.base(), "skiff/busybox", "1.0", &img, None);
    let reference = format!("{}/skiff/busybox:1.0", reg.host());

    // Not configured insecure: only HTTPS is tried, which a plain-HTTP registry cannot speak.
    let err = t.rt.pull_image(&reference).unwrap_err().to_string();
    eprintln!("not insecure: {err}");
    assert!(
        err.contains("cannot reach registry") && err.contains("https://"),
        "{err}"
    );
    assert_store_empty(&t);

    write_registries(&t, &insecure(&reg.host()));
    let info = t.rt.pull_image(&reference).unwrap();
    assert_eq!(info.names, vec![reference.clone()]);
    assert_eq!(info.id, img.config_digest);
    assert_eq!(
        t.rt.images().get(&reference).unwrap().manifest.to_string(),
        img.digest
    );

    let cfg = ContainerConfig {
        id: "pulled".into(),
        image: reference,
        command: vec!["sh".into(), "-c".into(), "echo pulled-ok".into()],
        ..Default::default()
    };
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("pulled").unwrap();
    let st =
        t.rt.wait_container("pulled", Some(Duration::from_secs(20)))
            .unwrap();
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(0)));
    let log = std::fs::read_to_string(t.rt.log_path("pulled").unwrap()).unwrap();
    assert!(log.contains("pulled-ok"), "{log}");
}

#[test]
fn index_picks_amd64_and_digests_pin_manifests() {
    if !is_root() {
        return;
    }
    let t = runtime("index");
    let Some(reg) = DockerRegistry::start(&t.scratch.path("registry"), None) else {
        return;
    };
    write_registries(&t, &insecure(&reg.host()));
    let amd = busybox_image();
    let arm_layer = skiff_testkit::images::Layer::new()
        .file("arm64-only", 0o644, b"wrong platform")
        .finish();
    let arm = image(&[arm_layer], &["sh"], "arm64", None);
    push_image(&reg.base(), "skiff/multi", "arm", &arm, None);
    push_image(&reg.base(), "skiff/multi", "amd", &amd, None);
    // arm64 listed first, so that taking the first entry would be caught.
    let (idx, idx_digest) = index(&[(&arm, "arm64"), (&amd, "amd64")]);
    push_manifest(&reg.base(), "skiff/multi", "latest", OCI_INDEX, &idx, None);

    let by_tag = format!("{}/skiff/multi", reg.host());
    let info = t.rt.pull_image(&by_tag).unwrap();
    assert_eq!(info.id, amd.config_digest);
    let rec = t.rt.images().get(&by_tag).unwrap();
    assert_eq!(rec.manifest.to_string(), amd.digest);
    assert_eq!(rec.names, vec![format!("{by_tag}:latest")]);
    let store = t.rt.images();
    let arm_blob = skiff_runtime::digest::Digest::parse(&arm.layers[0].1).unwrap();
    assert!(
        !store.blob_path(&arm_blob).exists(),
        "arm64 layer was stored"
    );

    for pinned in [&amd.digest, &idx_digest] {
        let r = format!("{}/skiff/multi@{pinned}", reg.host());
        let info = t.rt.pull_image(&r).unwrap();
        assert_eq!(info.id, amd.config_digest, "{r}");
        assert!(info.names.contains(&r), "{:?}", info.names);
    }
    // A digest the registry does not have under this repository.
    let missing = format!(
        "{}/skiff/multi@{}",
        reg.host(),
        skiff_testkit::images::digest(b"not in the registry")
    );
    let err = t.rt.pull_image(&missing).unwrap_err();
    assert!(matches!(err, Error::ImageNotFound(_)), "{err}");
}

#[test]
fn unknown_image_is_a_clear_404_and_stores_nothing() {
    if !is_root() {
        return;
    }
    let t = runtime("404");
    let Some(reg) = DockerRegistry::start(&t.scratch.path("registry"), None) else {
        return;
    };
    write_registries(&t, &insecure(&reg.host()));
    push_image(&reg.base(), "skiff/busybox", "1.0", &busybox_image(), None);
    for r in ["skiff/busybox:2.0", "skiff/nope:1"] {
        let reference = format!("{}/{r}", reg.host());
        let err = t.rt.pull_image(&reference).unwrap_err();
        assert!(matches!(err, Error::ImageNotFound(_)), "{err}");
        let msg = err.to_string();
        eprintln!("404: {msg}");
        assert!(
            msg.contains("manifest unknown") && msg.contains(&reference),
            "{msg}"
        );
    }
    assert_store_empty(&t);
}

#[test]
fn basic_auth_needs_credentials_from_registries_yaml_or_a_pull_secret() {
    if !is_root() {
        return;
    }
    let t = runtime("basic");
    let Some(reg) = DockerRegistry::start(&t.scratch.path("registry"), Some(HTPASSWD)) else {
        return;
    };
    let creds = basic(USER, PASSWORD);
    let img = busybox_image();
    push_image(&reg.base(), "private/app", "v1", &img, Some(&creds));
    let reference = format!("{}/private/app:v1", reg.host());

    write_registries(&t, &insecure(&reg.host()));
    let err = t.rt.pull_image(&reference).unwrap_err().to_string();
    eprintln!("basic, no creds: {err}");
    assert!(
        err.contains("pull access denied") && err.contains("authorization failed"),
        "{err}"
    );
    assert_store_empty(&t);

    // Wrong password in registries.yaml: still denied.
    let with_auth = |password: &str| {
        format!(
            "{}configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: {password}\n",
            insecure(&reg.host()),
            reg.host()
        )
    };
    write_registries(&t, &with_auth("wrong"));
    let err = t.rt.pull_image(&reference).unwrap_err().to_string();
    assert!(err.contains("pull access denied"), "{err}");

    write_registries(&t, &with_auth(PASSWORD));
    assert_eq!(t.rt.pull_image(&reference).unwrap().id, img.config_digest);

    // The same through a kubernetes.io/dockerconfigjson secret, with no creds in the yaml.
    t.rt.remove_image(&reference).unwrap();
    write_registries(&t, &insecure(&reg.host()));
    let secret = serde_json::json!({"auths": {
        "other.example:5000": {"username": "x", "password": "y"},
        reg.host(): {"auth": base64_of(&format!("{USER}:{PASSWORD}"))},
    }});
    let auth = RegistryAuth::from_docker_config_json(secret.to_string().as_bytes(), &reg.host())
        .unwrap()
        .unwrap();
    let info = t.rt.pull_image_with(&reference, Some(&auth)).unwrap();
    assert_eq!(info.id, img.config_digest);
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn bearer_token_flow_against_a_token_server() {
    if !is_root() {
        return;
    }
    let t = runtime("bearer");
    let fake = FakeRegistry::start(FakeAuth::Bearer, Duration::ZERO);
    let img = busybox_image();
    fake.add_image("skiff/app", "v1", &img);
    let reference = format!("{}/skiff/app:v1", fake.host());

    write_registries(&t, &insecure(&fake.host()));
    let err = t.rt.pull_image(&reference).unwrap_err().to_string();
    eprintln!("bearer, no creds: {err}");
    assert!(
        err.contains("pull access denied") && err.contains("token server"),
        "{err}"
    );
    assert_store_empty(&t);

    write_registries(
        &t,
        &format!(
            "{}configs:\n  \"{}\":\n    auth: {{username: {USER}, password: {PASSWORD}}}\n",
            insecure(&fake.host()),
            fake.host()
        ),
    );
    assert_eq!(t.rt.pull_image(&reference).unwrap().id, img.config_digest);
    let tokens = fake.state.token_requests.lock().unwrap().clone();
    let (query, ok) = tokens.last().unwrap();
    assert!(ok);
    assert!(
        query.contains("scope=repository%3Askiff%2Fapp%3Apull")
            && query.contains("service=fake-registry"),
        "{query}"
    );
    // One token served the whole pull: a single successful token request.
    assert_eq!(tokens.iter().filter(|(_, ok)| *ok).count(), 1);
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_stored() {
    if !is_root() {
        return;
    }
    let t = runtime("corrupt");
    let fake = FakeRegistry::start(FakeAuth::None, Duration::ZERO);
    let img = busybox_image();
    fake.add_image("skiff/app", "v1", &img);
    let layer = img.layers[0].1.clone();
    fake.state.corrupt.lock().unwrap().push(layer.clone());
    write_registries(&t, &insecure(&fake.host()));
    let err =
        t.rt.pull_image(&format!("{}/skiff/app:v1", fake.host()))
            .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    eprintln!("corrupt: {msg}");
    // Caught while streaming, so the message names the registry it came from.
    assert!(
        msg.contains("digest mismatch") && msg.contains(&layer) && msg.contains(&fake.host()),
        "{msg}"
    );
    assert_store_empty(&t);
}

#[test]
fn unknown_layer_media_type_is_refused_before_downloading() {
    if !is_root() {
        return;
    }
    let t = runtime("mediatype");
    let fake = FakeRegistry::start(FakeAuth::None, Duration::ZERO);
    let img = image(
        &[busybox_layer()],
        &["sh"],
        "amd64",
        Some("application/vnd.example.weird"),
    );
    fake.add_image("skiff/app", "v1", &img);
    write_registries(&t, &insecure(&fake.host()));
    let err =
        t.rt.pull_image(&format!("{}/skiff/app:v1", fake.host()))
            .unwrap_err();
    eprintln!("media type: {err}");
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    assert!(err.to_string().contains("application/vnd.example.weird"));
    assert_eq!(fake.state.blob_gets.lock().unwrap().len(), 0);
    assert_store_empty(&t);
}

#[test]
fn concurrent_pulls_of_one_image_download_each_blob_once() {
    if !is_root() {
        return;
    }
    let t = runtime("concurrent");
    // Slow blobs keep the first pull busy while the second one arrives.
    let fake = FakeRegistry::start(FakeAuth::None, Duration::from_millis(300));
    let img = busybox_image();
    fake.add_image("skiff/app", "v1", &img);
    write_registries(&t, &insecure(&fake.host()));
    let reference = format!("{}/skiff/app:v1", fake.host());
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| t.rt.pull_image(&reference).unwrap().id))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| id == &img.config_digest), "{ids:?}");
    assert_eq!(fake.gets(&img.config_digest), 1);
    assert_eq!(fake.gets(&img.layers[0].1), 1);
}

#[test]
fn short_names_go_to_docker_hub_mirrors_in_order() {
    if !is_root() {
        return;
    }
    let t = runtime("mirror");
    let fake = FakeRegistry::start(FakeAuth::None, Duration::ZERO);
    let img = busybox_image();
    fake.add_image("library/busybox", "latest", &img);
    // The first mirror refuses connections; the pull moves on to the second.
    let dead = free_port();
    write_registries(
        &t,
        &format!(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:{dead}\"\n      - \"http://{}\"\n",
            fake.host()
        ),
    );
    let info = t.rt.pull_image("busybox").unwrap();
    assert_eq!(
        info.names,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    let requests = fake.state.requests.lock().unwrap().clone();
    assert!(
        requests.contains(&"/v2/library/busybox/manifests/latest".to_string()),
        "{requests:?}"
    );
    assert!(t.rt.image_status("busybox").unwrap().is_some());
}

#[test]
fn https_registry_is_trusted_through_its_ca_file() {
    if !is_root() {
        return;
    }
    let t = runtime("tls");
    let Some(reg) = DockerRegistry::start_with(&t.scratch.path("registry"), None, true) else {
        return;
    };
    let img = busybox_image();
    push_image(&reg.base(), "skiff/busybox", "1.0", &img, None);
    let reference = format!("{}/skiff/busybox:1.0", reg.host());

    // HTTPS is the default, but the server's CA is unknown to the system.
    let err = t.rt.pull_image(&reference).unwrap_err().to_string();
    eprintln!("unknown CA: {err}");
    assert!(err.contains("cannot reach registry"), "{err}");
    assert_store_empty(&t);

    let ca = reg.ca_file.clone().unwrap();
    write_registries(
        &t,
        &format!(
            "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
            reg.host(),
            ca.display()
        ),
    );
    assert_eq!(t.rt.pull_image(&reference).unwrap().id, img.config_digest);
}
