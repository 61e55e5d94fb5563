//! Bounded, deterministic fuzzing of skiff-api's decoders, parsers and patchers: a few thousand
//! generated and mutated inputs per function (seeded RNG, mutations of real Deployments,
//! patches, selectors and kubectl's protobuf bodies), each run under `catch_unwind`, plus
//! every saved crash input under `fuzz/regressions/`. A panic fails the test with the input
//! that caused it.
//!
//! The harnesses are the cargo-fuzz targets' own (`fuzz/src/api.rs`, included below), so this
//! is a short run of the same fuzzing; `docs/fuzzing.md` says how to run the real thing.
//! `SKIFF_FUZZ_SMOKE_ITERS` and `SKIFF_FUZZ_SMOKE_SEED` change the run length and seed.

#[allow(dead_code)]
#[path = "../../../fuzz/src/api.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../../fuzz/src/mutate.rs"]
mod mutate;
#[allow(dead_code)]
#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;

use std::path::{Path, PathBuf};

use mutate::Rng;
use serde_json::{json, Value};

/// Generated inputs per target unless `SKIFF_FUZZ_SMOKE_ITERS` says otherwise.
const ITERS: usize = 2000;
/// The same for the cheap string parsers and the protobuf decoder.
const CHEAP_ITERS: usize = 5000;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protobuf/testdata")
}

/// The kubectl fixtures with the given extension, sorted by name.
fn fixtures(ext: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(testdata())
        .expect("protobuf testdata")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("fixture")).collect()
}

/// Real objects: the harness Deployment and every kubectl JSON fixture.
fn objects() -> Vec<Value> {
    let mut out = vec![harness::deployment()];
    out.extend(fixtures("json").iter().filter_map(|b| serde_json::from_slice(b).ok()));
    out
}

/// The seeds, then `n` inputs from `gen`.
fn inputs(seeds: Vec<Vec<u8>>, n: usize, mut gen: impl FnMut() -> Vec<u8>) -> impl Iterator<Item = Vec<u8>> {
    seeds.into_iter().chain((0..n).map(move |_| gen()))
}

/// Inputs for a two-document target: `doc \0 patch` (or the patch alone, against the
/// harness Deployment), sometimes byte-mutated afterwards.
fn two_docs(target: &str, mut patch: impl FnMut(&mut Rng, &Value) -> Value) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng::new(smoke::seed(target));
    let docs = objects();
    inputs(Vec::new(), smoke::iterations(ITERS), move || {
        let doc = rng.pick(&docs).clone();
        let doc = if rng.one_in(3) { mutate::mutate_json(&mut rng, &doc) } else { doc };
        let p = patch(&mut rng, &doc);
        let bytes = if rng.one_in(8) { serde_json::to_vec(&p).expect("serializes") } else { mutate::join(&doc, &p) };
        if rng.one_in(10) {
            mutate::mutate_bytes(&mut rng, &bytes, &["\0", "{}", "[]", "null", "\"$patch\":\"delete\","])
        } else {
            bytes
        }
    })
}

/// Token-string inputs: seeds, seed mutations and random token soups.
fn strings(target: &str, seeds: &[&str], alphabet: &[&str]) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng::new(smoke::seed(target));
    let seed_strings: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    let alphabet: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
    inputs(seeds.iter().map(|s| s.as_bytes().to_vec()).collect(), smoke::iterations(CHEAP_ITERS), move || {
        let alpha: Vec<&str> = alphabet.iter().map(String::as_str).collect();
        match rng.below(6) {
            0 => mutate::token_string(&mut rng, &alpha, 12).into_bytes(),
            1 => {
                let s = rng.pick(&seed_strings).clone();
                mutate::mutate_bytes(&mut rng, s.as_bytes(), &alpha)
            }
            _ => {
                let s = rng.pick(&seed_strings).clone();
                mutate::mutate_string(&mut rng, &s, &alpha).into_bytes()
            }
        }
    })
}

#[test]
fn protobuf_decode() {
    let bins = fixtures("bin");
    assert!(bins.len() >= 20, "kubectl protobuf fixtures present");
    let jsons = objects();
    let mut rng = Rng::new(smoke::seed("protobuf_decode"));
    let dict = ["k8s\0", "\n", "\x12", "\x1a", "\"", "*", "v1", "apps/v1", "Deployment", "\x08\x01"];
    let mut seeds = bins.clone();
    seeds.extend([b"".to_vec(), b"k8s".to_vec(), b"k8s\0".to_vec(), b"k8s\0\n\0".to_vec()]);
    let gen = move || match rng.below(8) {
        // Re-encode a mutated real object: valid framing around odd values.
        0 | 1 => {
            let seed = rng.pick(&jsons).clone();
            let obj = mutate::mutate_json(&mut rng, &seed);
            let encoded = smoke::capture(|| skiff_api::protobuf::encode(&obj)).ok().and_then(Result::ok);
            let bytes = encoded.unwrap_or_else(|| rng.pick(&bins).clone());
            if rng.one_in(2) {
                mutate::mutate_bytes(&mut rng, &bytes, &dict)
            } else {
                bytes
            }
        }
        2 => {
            let mut b = b"k8s\0".to_vec();
            b.extend(mutate::random_bytes(&mut rng, 64));
            b
        }
        _ => {
            let seed = rng.pick(&bins).clone();
            mutate::mutate_bytes(&mut rng, &seed, &dict)
        }
    };
    smoke::run("protobuf_decode", harness::protobuf_decode, inputs(seeds, smoke::iterations(CHEAP_ITERS), gen));
}

#[test]
fn json_patch() {
    smoke::run("json_patch", harness::json_patch, two_docs("json_patch", |rng, doc| {
        if rng.one_in(10) {
            mutate::random_value(rng, 3)
        } else {
            mutate::random_json_patch(rng, doc)
        }
    }));
}

#[test]
fn merge_patch() {
    smoke::run("merge_patch", harness::merge_patch, two_docs("merge_patch", |rng, doc| {
        match rng.below(3) {
            0 => mutate::random_value(rng, 4),
            1 => {
                let sub = mutate::random_subtree(rng, doc);
                mutate::mutate_json(rng, &sub)
            }
            _ => mutate::mutate_json(rng, doc),
        }
    }));
}

#[test]
fn strategic_merge_patch() {
    smoke::run("strategic_merge_patch", harness::strategic_merge_patch, two_docs("strategic_merge_patch", |rng, doc| {
        match rng.below(5) {
            0 => mutate::random_value(rng, 4),
            1 => {
                let sub = mutate::random_subtree(rng, doc);
                mutate::mutate_json(rng, &sub)
            }
            2 => json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                "containers": [{"name": "sidecar", "image": "busybox"}, {"name": "nginx", "$patch": "delete"}]
            }}}, "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]}}),
            _ => mutate::mutate_json(rng, doc),
        }
    }));
}

#[test]
fn server_side_apply() {
    let mut rng = Rng::new(smoke::seed("server_side_apply"));
    let docs = objects();
    let gen = move || {
        let base = rng.pick(&docs).clone();
        let applied = if rng.one_in(6) { mutate::random_value(&mut rng, 3) } else { mutate::mutate_json(&mut rng, &base) };
        let mut input = match rng.below(3) {
            // Create: empty live part.
            0 => Vec::new(),
            1 => serde_json::to_vec(&base).expect("serializes"),
            _ => serde_json::to_vec(&mutate::mutate_json(&mut rng, &base)).expect("serializes"),
        };
        input.push(0);
        input.extend(serde_json::to_vec(&applied).expect("serializes"));
        input
    };
    smoke::run("server_side_apply", harness::server_side_apply, inputs(Vec::new(), smoke::iterations(ITERS), gen));
}

#[test]
fn label_selector() {
    let seeds = [
        "", "app=web", "app==web", "app!=web", "app", "!app", "app in (web,db)", "app notin (web)",
        "tier in (),app", "app=web,tier!=frontend,!canary", "example.com/app=v1", "a>1", "a<2",
        "a in (b", "a=b,", ",", "a=b c=d", " app = web ", "x/y/z=1", "a notin(b,c),d",
    ];
    let alphabet = [
        "a", "app", "web", "=", "==", "!=", "!", ",", " ", "in", "notin", "(", ")", ">", "<", "/", ".",
        "-", "_", "0", "9", "é", "\u{a0}", "\u{85}", "\u{2003}", "\u{0}", "example.com/", "\t",
    ];
    let selectors_json = [
        json!({"matchLabels": {"app": "web"}}),
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]},
                                    {"key": "tier", "operator": "DoesNotExist"}]}),
        json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}),
    ];
    let mut rng = Rng::new(smoke::seed("label_selector_json"));
    let json_inputs: Vec<Vec<u8>> = (0..smoke::iterations(ITERS) / 4)
        .map(|_| {
            let seed = rng.pick(&selectors_json).clone();
            let v = mutate::mutate_json(&mut rng, &seed);
            serde_json::to_vec(&v).expect("serializes")
        })
        .collect();
    let all = strings("label_selector", &seeds, &alphabet).chain(json_inputs);
    smoke::run("label_selector", harness::label_selector, all);
}

#[test]
fn field_selector() {
    let seeds = [
        "", "metadata.name=web", "metadata.name==web", "status.phase!=Running,spec.nodeName=n1",
        "spec.host=n1", "involvedObject.kind=Pod", "regarding.kind=Pod", "a=", "=", "a=b=c",
        "a=b\\,c", "a\\=b=c", "metadata.namespace!=default,", "foo", "\\", "spec.x=1",
    ];
    let alphabet = [
        "metadata.", "name", "namespace", "spec.", "status.", "phase", "=", "==", "!=", ",", "\\", " ",
        "a", "1", ".", "é", "\u{a0}", "\u{85}", "\u{2003}", "\u{0}",
    ];
    smoke::run("field_selector", harness::field_selector, strings("field_selector", &seeds, &alphabet));
}

#[test]
fn quantity() {
    let seeds = [
        "0", "1", "100m", "1.5", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei", "1k", "1M", "1G", "1T", "1P",
        "1E", "1e3", "1E-3", "-1", "+1", ".5", "5.", "0.000000001", "1n", "1u", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "12345678901234567890Ei", "1e999", "1e-999",
        "1.000000000000000000000001", "8Ei", "-8Ei", "999999999999999999999999999999", "0x10", "1e", "",
    ];
    let alphabet = [
        "0", "1", "5", "9", ".", "-", "+", "e", "E", "m", "n", "u", "k", "K", "M", "G", "T", "P", "Ki", "Mi",
        "Gi", "Ei", "i", "999999999", " ", "é", "\u{a0}",
    ];
    smoke::run("quantity", harness::quantity, strings("quantity", &seeds, &alphabet));
}

#[test]
fn jsonpath() {
    let seeds = [
        ".spec.replicas", "{.metadata.name}", ".spec.template.spec.containers[0].image",
        ".spec.template.spec.containers[*].name", "{.metadata.labels.app}",
        ".status.conditions[?(@.type==\"Ready\")].status", ".items[-1:]", ".a..b", "$.spec",
        ".metadata.annotations['a\\.b']", ".spec['replicas']", "[0:2:1]", "{", "}", "{}", "[", "..",
        ".spec.template.spec.containers[-1].ports[0].containerPort", "{range .items[*]}{.x}{end}",
    ];
    let alphabet = [
        ".", "..", "spec", "metadata", "containers", "[", "]", "*", "0", "-1", ":", "?(", "@", "==", ")",
        "'", "\"", "\\", "{", "}", "$", "é", "\u{a0}", "\u{85}", "\u{2003}", " ", "range", "end",
    ];
    smoke::run("jsonpath", harness::jsonpath, strings("jsonpath", &seeds, &alphabet));
}

#[test]
fn validation() {
    let mut rng = Rng::new(smoke::seed("validation"));
    let docs = objects();
    let seeds = docs.iter().map(|d| serde_json::to_vec(d).expect("serializes")).collect();
    let gen = move || {
        let seed = rng.pick(&docs).clone();
        let mut obj = mutate::mutate_json(&mut rng, &seed);
        if rng.one_in(4) {
            // Validate the body as another kind: its fields meet another kind's checks.
            let (api_version, kind) = *rng.pick(harness::KINDS);
            if let Value::Object(m) = &mut obj {
                m.insert("apiVersion".into(), api_version.into());
                m.insert("kind".into(), kind.into());
            }
        }
        serde_json::to_vec(&obj).expect("serializes")
    };
    smoke::run("validation", harness::validation, inputs(seeds, smoke::iterations(ITERS), gen));
}

#[test]
fn regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    // `route` and `body_decode` are replayed by skiff-apiserver's fuzz_smoke test.
    smoke::regressions(&root, harness::TARGETS, &["route", "body_decode"]);
}
