//! Helpers for the registry tests: test images, Debian's `docker-registry` run as a child
//! process on loopback, a minimal push over the distribution API, and a small fake registry
//! for what a real one will not do (serve corrupt blobs, run a token server we control,
//! count downloads). All listen on 127.0.0.1 only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_testkit::images::{digest, gzip};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// User, password and bcrypt line of the htpasswd file (cost 4: the test should not spend
/// its time hashing).
pub const USER: &str = "skiff";
pub const PASSWORD: &str = "s3cret-pw";
pub const HTPASSWD: &str = "skiff:$2b$04$gsLUZw4JXxGd83TstW.eBO529Lr2WV4LUp4yJVwvAt9GBMAnMTm6q";

/// An image ready to push: every blob with its digest.
#[derive(Clone)]
pub struct TestImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    /// (compressed bytes, digest, media type), base first.
    pub layers: Vec<(Vec<u8>, String, String)>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

/// Builds an image from uncompressed layer tars, gzip-compressing them as registries do.
pub fn image(
    layers: &[Vec<u8>],
    cmd: &[&str],
    arch: &str,
    layer_media_type: Option<&str>,
) -> TestImage {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = digest(&config);
    let layers: Vec<(Vec<u8>, String, String)> = layers
        .iter()
        .map(|l| {
            let z = gzip(l);
            let d = digest(&z);
            (z, d, layer_media_type.unwrap_or(GZIP_LAYER).to_string())
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(b, d, mt)| serde_json::json!({"mediaType": mt, "digest": d, "size": b.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = digest(&manifest);
    TestImage {
        config,
        config_digest,
        layers,
        manifest,
        digest,
    }
}

/// An OCI index over `(image, architecture)` pairs; returns its bytes and digest.
pub fn index(entries: &[(&TestImage, &str)]) -> (Vec<u8>, String) {
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries.iter().map(|(img, arch)| serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let d = digest(&bytes);
    (bytes, d)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The helpers' own client; it trusts any certificate because it only talks to the
/// registries these tests start.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Debian's `docker-registry` serving `dir` on a loopback port; killed (by pid) on drop.
pub struct DockerRegistry {
    child: Child,
    pub port: u16,
    /// The CA that signed the server certificate, when serving HTTPS.
    pub ca_file: Option<PathBuf>,
}

/// Writes a CA and a server certificate for 127.0.0.1 signed by it into `dir`; returns
/// (CA file, server certificate file, server key file).
pub fn write_tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

impl DockerRegistry {
    /// Starts the registry with storage under `dir`, with htpasswd auth when `htpasswd` is
    /// given. `None` (with a message) when the package is not installed.
    pub fn start(dir: &Path, htpasswd: Option<&str>) -> Option<Self> {
        Self::start_with(dir, htpasswd, false)
    }

    /// Like [`DockerRegistry::start`], serving HTTPS with a certificate from a fresh CA
    /// when `tls` is set.
    pub fn start_with(dir: &Path, htpasswd: Option<&str>, tls: bool) -> Option<Self> {
        if !Path::new(DOCKER_REGISTRY).exists() {
            eprintln!("SKIP: {DOCKER_REGISTRY} not installed (apt-get install docker-registry)");
            return None;
        }
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = free_port();
        let auth = match htpasswd {
            Some(line) => {
                std::fs::write(dir.join("htpasswd"), format!("{line}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let (ca_file, tls_config) = if tls {
            let (ca, cert, key) = write_tls_files(dir);
            let c = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
            (Some(ca), c)
        } else {
            (None, String::new())
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_config}{auth}",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            child,
            port,
            ca_file,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = agent().get(&format!("{}/v2/", reg.base())).call() {
                if matches!(r.status().as_u16(), 200 | 401) {
                    return Some(reg);
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not come up: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`, or `https://` when serving TLS.
    pub fn base(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        // Child::kill signals exactly this child's pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Authorization` value for basic auth.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Uploads a blob: `POST /v2/<repo>/blobs/uploads/`, then `PUT <location>?digest=`.
pub fn push_blob(base: &str, repo: &str, data: &[u8], auth: Option<&str>) {
    let a = agent();
    let mut req = a.post(&format!("{base}/v2/{repo}/blobs/uploads/"));
    if let Some(h) = auth {
        req = req.header("Authorization", h);
    }
    let resp = req.send_empty().unwrap();
    assert_eq!(resp.status().as_u16(), 202, "start upload to {repo}");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = a
        .put(&format!("{location}{sep}digest={}", digest(data)))
        .header("Content-Type", "application/octet-stream");
    if let Some(h) = auth {
        put = put.header("Authorization", h);
    }
    let resp = put.send(data).unwrap();
    assert_eq!(resp.status().as_u16(), 201, "finish upload to {repo}");
}

/// `PUT /v2/<repo>/manifests/<reference>`.
pub fn push_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    auth: Option<&str>,
) {
    let mut req = agent()
        .put(&format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", media_type);
    if let Some(h) = auth {
        req = req.header("Authorization", h);
    }
    let mut resp = req.send(bytes).unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 201, "push manifest {repo}:{reference}: {body}");
}

/// Pushes an image's blobs and its manifest under `tag`.
pub fn push_image(base: &str, repo: &str, tag: &str, img: &TestImage, auth: Option<&str>) {
    push_blob(base, repo, &img.config, auth);
    for (b, _, _) in &img.layers {
        push_blob(base, repo, b, auth);
    }
    push_manifest(base, repo, tag, OCI_MANIFEST, &img.manifest, auth);
}

/// How the fake registry authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FakeAuth {
    /// Everything is public.
    None,
    /// Bearer tokens from its own `/token`, which wants basic credentials USER/PASSWORD.
    Bearer,
}

/// What the fake registry serves and what it saw.
#[derive(Default)]
pub struct FakeState {
    /// `<repo>/<tag or digest>` -> (media type, bytes).
    pub manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// digest -> bytes.
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Digests served with one byte flipped.
    pub corrupt: Mutex<Vec<String>>,
    /// GETs per blob digest.
    pub blob_gets: Mutex<HashMap<String, usize>>,
    /// Query strings of token requests and whether they carried valid credentials.
    pub token_requests: Mutex<Vec<(String, bool)>>,
    /// Paths of all requests, in order.
    pub requests: Mutex<Vec<String>>,
}

/// A minimal registry on a loopback port, one thread per connection.
pub struct FakeRegistry {
    pub port: u16,
    pub state: Arc<FakeState>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    /// Starts serving; `blob_delay` slows blob responses so that concurrent pulls overlap.
    pub fn start(auth: FakeAuth, blob_delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(FakeState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st, auth, port, blob_delay));
            }
        });
        Self {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Serves `img` as `<repo>:<tag>` (and by digest).
    pub fn add_image(&self, repo: &str, tag: &str, img: &TestImage) {
        let mut m = self.state.manifests.lock().unwrap();
        for r in [tag, img.digest.as_str()] {
            m.insert(
                format!("{repo}/{r}"),
                (OCI_MANIFEST.into(), img.manifest.clone()),
            );
        }
        let mut b = self.state.blobs.lock().unwrap();
        b.insert(img.config_digest.clone(), img.config.clone());
        for (bytes, d, _) in &img.layers {
            b.insert(d.clone(), bytes.clone());
        }
    }

    /// GETs of one blob so far.
    pub fn gets(&self, digest: &str) -> usize {
        *self
            .state
            .blob_gets
            .lock()
            .unwrap()
            .get(digest)
            .unwrap_or(&0)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(mut conn: &TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}

fn serve(conn: TcpStream, st: &FakeState, auth: FakeAuth, port: u16, blob_delay: Duration) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = v.trim().to_string();
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    st.requests.lock().unwrap().push(path.to_string());
    let json = [("Content-Type", "application/json".to_string())];
    if path == "/token" {
        let ok = authorization == basic(USER, PASSWORD);
        st.token_requests
            .lock()
            .unwrap()
            .push((query.to_string(), ok));
        return if ok {
            respond(
                &conn,
                "200 OK",
                &json,
                br#"{"token":"fake-token","expires_in":300}"#,
            )
        } else {
            respond(
                &conn,
                "401 Unauthorized",
                &json,
                br#"{"details":"bad credentials"}"#,
            )
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(&conn, "404 Not Found", &[], b"");
    };
    if auth == FakeAuth::Bearer && authorization != "Bearer fake-token" {
        let challenge =
            format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"");
        return respond(
            &conn,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
    }
    if rest.is_empty() {
        return respond(&conn, "200 OK", &json, b"{}");
    }
    if let Some((repo, r)) = rest.split_once("/manifests/") {
        return match st.manifests.lock().unwrap().get(&format!("{repo}/{r}")) {
            Some((mt, bytes)) => respond(&conn, "200 OK", &[("Content-Type", mt.clone())], bytes),
            None => respond(
                &conn,
                "404 Not Found",
                &json,
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
            ),
        };
    }
    if let Some((_, d)) = rest.split_once("/blobs/") {
        *st.blob_gets
            .lock()
            .unwrap()
            .entry(d.to_string())
            .or_default() += 1;
        let blob = st.blobs.lock().unwrap().get(d).cloned();
        let Some(mut bytes) = blob else {
            return respond(
                &conn,
                "404 Not Found",
                &json,
                br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
            );
        };
        std::thread::sleep(blob_delay);
        if st.corrupt.lock().unwrap().iter().any(|c| c == d) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
        }
        return respond(
            &conn,
            "200 OK",
            &[("Content-Type", "application/octet-stream".into())],
            &bytes,
        );
    }
    respond(&conn, "404 Not Found", &[], b"");
}

/// A scratch dir with the skiff data-dir layout: returns (data dir, runtime root).
pub fn data_dirs(scratch: &Path) -> (PathBuf, PathBuf) {
    let data = scratch.join("data");
    let root = data.join("agent/runtime");
    std::fs::create_dir_all(&root).unwrap();
    (data, root)
}
