//! Image store integration tests: imports of every supported format, whiteouts through a
//! real overlayfs mount, failure modes that must store nothing, removal and GC.
//! Needs root (ownership, whiteout device nodes, trusted xattrs, mounts).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use skiff_runtime::image::{ImageStore, ImportOptions};
use skiff_runtime::Error;

fn store_is_empty(store: &ImageStore) -> bool {
    let count = |d: &str| std::fs::read_dir(store.dir().join(d)).unwrap().count();
    store.list().unwrap().is_empty()
        && count("blobs/sha256") == 0
        && count("snapshots") == 0
        && count("ingest") == 0
}

#[test]
fn docker_archive_import_list_and_rm() {
    let s = Scratch::new("docker-archive");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let layer = busybox_layer();
    write_docker_archive(
        &s.path("img.tar"),
        "busybox:test",
        std::slice::from_ref(&layer),
        &["sh"],
    );
    let imported = store
        .import(&s.path("img.tar"), &ImportOptions::default())
        .unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].names,
        vec!["docker.io/library/busybox:test".to_string()]
    );
    let img = store.get("busybox:test").unwrap();
    assert_eq!(img.layers[0].diff_id.as_str(), digest(&layer));
    let snap = store.snapshot_path(&img.layers[0].chain_id);
    assert!(snap.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(snap.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(
        store.config(&img).unwrap().config.unwrap().cmd.unwrap(),
        vec!["sh"]
    );
    // Importing again is idempotent.
    store
        .import(&s.path("img.tar"), &ImportOptions::default())
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    // By id prefix works too.
    assert_eq!(store.get(img.id.short()).unwrap().id, img.id);
    store.remove("busybox:test").unwrap();
    assert!(store_is_empty(&store));
}

#[test]
fn oci_layout_gzip_multi_platform_and_oci_archive() {
    let s = Scratch::new("oci-layout");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let layers = vec![
        busybox_layer(),
        Layer::new().file("etc/motd", 0o644, b"hi\n").finish(),
    ];
    let opts = OciOptions {
        gzip: true,
        multi_platform: true,
        ..Default::default()
    };
    write_oci_layout(
        &s.path("layout"),
        "example.com/bb:1",
        &layers,
        &["sh"],
        &opts,
    );
    let imported = store
        .import(&s.path("layout"), &ImportOptions::default())
        .unwrap();
    assert_eq!(imported[0].names, vec!["example.com/bb:1".to_string()]);
    assert_eq!(imported[0].layers.len(), 2);
    // The layout itself is left untouched (blobs copied, not moved).
    assert!(s.path("layout/index.json").exists());
    let lowers = store.lower_dirs(&imported[0]);
    assert!(lowers[0].join("etc/motd").is_file());
    assert!(lowers[1].join("bin/busybox").is_file());

    // The same layout as an OCI archive, under another name, shares all content.
    tar_dir(&s.path("layout"), &s.path("oci.tar"));
    let again = store
        .import(
            &s.path("oci.tar"),
            &ImportOptions {
                name: Some("bb2".into()),
            },
        )
        .unwrap();
    assert_eq!(again[0].id, imported[0].id);
    let img = store.get("bb2").unwrap();
    assert!(img.names.contains(&"example.com/bb:1".to_string()));
    // Removing one name keeps the image.
    store.remove("bb2").unwrap();
    assert!(store.get("example.com/bb:1").is_ok());
    store.remove(img.id.as_str()).unwrap();
    assert!(store_is_empty(&store));
}

#[test]
fn whiteouts_and_opaque_dirs_through_overlayfs() {
    let s = Scratch::new("whiteouts");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let base = Layer::new()
        .dir("a", 0o755)
        .file("a/gone", 0o644, b"x")
        .file("a/kept", 0o644, b"x")
        .dir("b", 0o755)
        .file("b/old", 0o644, b"x")
        .finish();
    let top = Layer::new()
        .dir("a", 0o755)
        .file("a/.wh.gone", 0o644, b"")
        .dir("b", 0o755)
        .file("b/.wh..wh..opq", 0o644, b"")
        .file("b/new", 0o600, b"y")
        .finish();
    write_oci_layout(
        &s.path("layout"),
        "wh:1",
        &[base, top],
        &["sh"],
        &OciOptions::default(),
    );
    let img = store
        .import(&s.path("layout"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    let lowers = store.lower_dirs(&img);
    let wh = std::fs::symlink_metadata(lowers[0].join("a/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(lowers[0].join("b"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        std::fs::metadata(lowers[0].join("b/new")).unwrap().mode() & 0o777,
        0o600
    );

    // Mount it the way containers do and look at the merged view.
    let merged = s.path("merged");
    for d in ["merged", "upper", "work"] {
        std::fs::create_dir_all(s.path(d)).unwrap();
    }
    let lower = lowers
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        s.path("upper").display(),
        s.path("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap();
    let ls = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(merged.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let a = ls("a");
    let b = ls("b");
    nix::mount::umount(&merged).unwrap();
    assert_eq!(a, vec!["kept"]);
    assert_eq!(b, vec!["new"]);
}

#[test]
fn bad_digest_truncated_layer_and_unknown_media_type_store_nothing() {
    let s = Scratch::new("bad-images");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let layer = busybox_layer();

    // A blob whose content does not match its name.
    write_oci_layout(
        &s.path("bad"),
        "bad:1",
        std::slice::from_ref(&layer),
        &["sh"],
        &OciOptions::default(),
    );
    let blob = s
        .path("bad/blobs/sha256")
        .join(&digest(&layer)["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let err = store
        .import(&s.path("bad"), &ImportOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(store_is_empty(&store));

    // A gzip layer cut short, with descriptors that match the truncated bytes: the digest
    // checks pass and only unpacking can notice.
    let gz = gzip(&layer);
    let cut = &gz[..gz.len() / 2];
    let dir = s.path("trunc");
    write_oci_layout(
        &dir,
        "trunc:1",
        std::slice::from_ref(&layer),
        &["sh"],
        &OciOptions {
            gzip: true,
            ..Default::default()
        },
    );
    std::fs::remove_dir_all(dir.join("blobs")).unwrap();
    std::fs::remove_file(dir.join("index.json")).unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = digest(data);
        std::fs::write(blobs.join(&d["sha256:".len()..]), data).unwrap();
        d
    };
    let config = config_json(std::slice::from_ref(&layer), &["sh"]);
    let cd = put(&config);
    let ld = put(cut);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": cut.len()}],
    }))
    .unwrap();
    let md = put(&manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len()}]}))
        .unwrap(),
    )
    .unwrap();
    let err = store.import(&dir, &ImportOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("truncated") || matches!(err, Error::DigestMismatch { .. }),
        "{err}"
    );
    assert!(store_is_empty(&store));

    // An unknown layer media type.
    let opts = OciOptions {
        layer_media_type: Some("application/x-mystery".into()),
        ..Default::default()
    };
    write_oci_layout(
        &s.path("mystery"),
        "m:1",
        std::slice::from_ref(&layer),
        &["sh"],
        &opts,
    );
    let err = store
        .import(&s.path("mystery"), &ImportOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    assert!(store_is_empty(&store));

    // A docker archive whose tarball was cut off.
    write_docker_archive(&s.path("d.tar"), "d:1", &[layer], &["sh"]);
    let full = std::fs::read(s.path("d.tar")).unwrap();
    std::fs::write(s.path("d-cut.tar"), &full[..full.len() / 3]).unwrap();
    let err = store
        .import(&s.path("d-cut.tar"), &ImportOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidImage { .. }), "{err}");
    assert!(store_is_empty(&store));
}

#[test]
fn leases_block_rm_and_gc_keeps_leased_snapshots() {
    let s = Scratch::new("leases");
    let store = ImageStore::open(&s.path("root")).unwrap();
    write_docker_archive(&s.path("img.tar"), "leased:1", &[busybox_layer()], &["sh"]);
    let img = store
        .import(&s.path("img.tar"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    store.lease("ctr1", &img).unwrap();
    assert!(matches!(
        store.remove("leased:1"),
        Err(Error::ImageInUse { .. })
    ));
    assert_eq!(store.gc().unwrap().snapshots, 0);
    store.release("ctr1").unwrap();
    store.remove("leased:1").unwrap();
    assert!(store_is_empty(&store));
}

#[test]
fn concurrent_imports_of_one_image_from_several_processes() {
    let s = Scratch::new("concurrent");
    let root = s.path("root");
    write_docker_archive(&s.path("img.tar"), "conc:1", &[busybox_layer()], &["sh"]);
    // Separate store handles on threads stand in for separate processes: each takes the
    // same file lock and stages in its own directory.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let root = root.clone();
            let tar = s.path("img.tar");
            std::thread::spawn(move || {
                let store = ImageStore::open(&root).unwrap();
                store.import(&tar, &ImportOptions::default()).unwrap()
            })
        })
        .collect();
    let ids: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap()[0].id.clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(store.dir().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(store.dir().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn image_cli_import_ls_rm() {
    let s = Scratch::new("cli");
    let root = s.path("root");
    write_docker_archive(&s.path("img.tar"), "cli:1", &[busybox_layer()], &["sh"]);
    let mut out = Vec::new();
    skiff_runtime::cli::image_import(&root, &[s.path("img.tar")], None, &mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("docker.io/library/cli:1"));
    let mut out = Vec::new();
    skiff_runtime::cli::image_ls(&root, &mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.starts_with("IMAGE") && text.contains("docker.io/library/cli:1"),
        "{text}"
    );
    let mut out = Vec::new();
    skiff_runtime::cli::image_rm(&root, &["cli:1".into()], &mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("deleted "));
    let err = skiff_runtime::cli::image_rm(&root, &["cli:1".into()], &mut Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), "image not found: cli:1");
}

#[test]
fn zstd_layers_unpack() {
    let s = Scratch::new("zstd");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let opts = OciOptions {
        zstd: true,
        ..Default::default()
    };
    write_oci_layout(
        &s.path("layout"),
        "zst:1",
        &[busybox_layer()],
        &["sh"],
        &opts,
    );
    let img = store
        .import(&s.path("layout"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    assert!(img.layers[0].media_type.ends_with("+zstd"));
    assert!(store.lower_dirs(&img)[0].join("bin/busybox").is_file());
}

#[test]
fn import_dir_imports_each_archive_and_reports_bad_ones() {
    let s = Scratch::new("import-dir");
    let store = ImageStore::open(&s.path("root")).unwrap();
    let dir = s.path("agent-images");
    std::fs::create_dir_all(&dir).unwrap();
    write_docker_archive(&dir.join("a.tar"), "a:1", &[busybox_layer()], &["sh"]);
    write_oci_layout(
        &dir.join("layout"),
        "b.example/b:1",
        &[Layer::new().file("f", 0o644, b"x").finish()],
        &["sh"],
        &OciOptions::default(),
    );
    std::fs::write(dir.join("broken.tar"), b"not a tarball").unwrap();
    std::fs::write(dir.join("README"), b"ignored").unwrap();
    let results = store.import_dir(&dir);
    assert_eq!(results.len(), 3);
    let ok: Vec<bool> = results.iter().map(|(_, r)| r.is_ok()).collect();
    assert_eq!(ok, vec![true, false, true], "{results:?}");
    assert!(store.get("a:1").is_ok() && store.get("b.example/b:1").is_ok());
    assert!(store.import_dir(&s.path("missing")).is_empty());
}
