//! Bounded, deterministic fuzzing of the API server's request parsing: route parsing of
//! request paths (with their query strings) and request body decoding (JSON, YAML, protobuf
//! by content type), a few thousand generated and mutated inputs each under `catch_unwind`,
//! plus the saved crash inputs under `fuzz/regressions/{route,body_decode}/`.
//!
//! The harnesses are the cargo-fuzz targets' own (`fuzz/src/apiserver.rs`); see
//! `docs/fuzzing.md`. `SKIFF_FUZZ_SMOKE_ITERS` and `SKIFF_FUZZ_SMOKE_SEED` change the run.

#[allow(dead_code)]
#[path = "../../../fuzz/src/apiserver.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../../fuzz/src/mutate.rs"]
mod mutate;
#[allow(dead_code)]
#[path = "../../../fuzz/src/smoke.rs"]
mod smoke;

use std::path::{Path, PathBuf};

use mutate::Rng;

/// Generated inputs per target unless `SKIFF_FUZZ_SMOKE_ITERS` says otherwise.
const ITERS: usize = 5000;

#[test]
fn route() {
    let seeds = [
        "/", "", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/api/v1/pods",
        "/api/v1/namespaces", "/api/v1/namespaces/default", "/api/v1/namespaces/default/status",
        "/api/v1/namespaces/default/finalize", "/api/v1/namespaces/default/pods/web/status",
        "/api/v1/namespaces/default/pods/web/log?follow=true&container=c",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "/api/v1/watch/namespaces/default/pods?labelSelector=app%3Dweb%2Ctier+in+%28a%29",
        "/apis/apps/v1/watch/deployments", "/openapi/v2", "/openapi/v3", "/openapi/v3/api/v1",
        "/openapi/v3/apis/apps/v1", "/healthz", "/livez/ping", "/readyz/etcd", "/version", "/metrics",
        "/api/v1/nodes/n1/proxy/metrics", "//api//v1//", "/api/v1/namespaces/a/b/c/d/e/f",
        "/?%", "/?a=%zz&b=%4&%e9=%ff%fe&&=&c",
    ];
    let alphabet = [
        "/", "api", "apis", "v1", "apps", "namespaces", "default", "pods", "status", "watch", "openapi",
        "v2", "v3", "healthz", "..", ".", "%", "%2F", "%zz", "?", "&", "=", "+", "é", "\u{a0}", "\u{85}", "\u{2003}", "\u{0}", " ",
    ];
    let mut rng = Rng::new(smoke::seed("route"));
    let n = smoke::iterations(ITERS);
    let gen = (0..n).map(move |_| match rng.below(6) {
        0 => mutate::token_string(&mut rng, &alphabet, 14).into_bytes(),
        1 => {
            let s = *rng.pick(&seeds);
            mutate::mutate_bytes(&mut rng, s.as_bytes(), &alphabet)
        }
        _ => {
            let s = *rng.pick(&seeds);
            mutate::mutate_string(&mut rng, s, &alphabet).into_bytes()
        }
    });
    let inputs = seeds.iter().map(|s| s.as_bytes().to_vec()).chain(gen);
    smoke::run("route", harness::route, inputs);
}

/// kubectl's protobuf fixtures from skiff-api.
fn protobuf_fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../skiff-api/src/protobuf/testdata");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("protobuf testdata")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("fixture")).collect()
}

#[test]
fn body_decode() {
    // The first byte picks the content type (see `harness::body_decode`): 0 JSON, 1 YAML,
    // 2 protobuf, 3 none, 4 JSON with parameters, 5 unsupported.
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
        "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":
        {"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}}"#;
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: &l\n    app: web\n\
        spec:\n  replicas: 3\n  selector:\n    matchLabels: *l\n  template:\n    metadata:\n      labels:\n        <<: *l\n\
        \x20   spec:\n      containers:\n      - name: nginx\n        image: nginx:1.25\n";
    let yaml_edge = [
        "a: .inf\nb: .nan\nc: -.inf\n", "? [a, b]\n: c\n", "{[1, 2]: 3}\n", "a: !!binary aGVsbG8=\n",
        "a: !Custom {b: 1}\n", "a: &x [*x]\n", "a: 0x1F\nb: 0o17\nc: 1e400\nd: 18446744073709551616\n",
        "- &a [x, x, x, x]\n- &b [*a, *a, *a, *a]\n- &c [*b, *b, *b, *b]\n- [*c, *c, *c, *c]\n",
        "---\na: 1\n---\nb: 2\n", "%YAML 1.2\n---\na: 1\n", "a: |\n  text\n", "~", "null", "[", "a: b: c",
        "\u{feff}a: 1", "? !!null\n: 1\n",
    ];
    let json_edge = ["{}", "[]", "null", "1e400", "\"\\ud800\"", "{\"a\":1,\"a\":2}", "[[[[[[[[[[]]]]]]]]]]", "{\"a\""];
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for ct in 0..6u8 {
        for body in [deployment, yaml].iter().chain(&yaml_edge).chain(&json_edge) {
            let mut b = vec![ct];
            b.extend(body.as_bytes());
            seeds.push(b);
        }
    }
    let pb = protobuf_fixtures();
    for p in &pb {
        let mut b = vec![2];
        b.extend(p);
        seeds.push(b);
    }
    let dict = [
        "{", "}", "[", "]", ":", ",", "\"", "- ", "\n", "  ", "&a", "*a", "<<: ", "!!", "? ", "---", "k8s\0",
        "1e999", "\\u0000",
    ];
    let mut rng = Rng::new(smoke::seed("body_decode"));
    let all = seeds.clone();
    let gen = (0..smoke::iterations(ITERS)).map(move |_| {
        let seed = rng.pick(&all).clone();
        let mut b = mutate::mutate_bytes(&mut rng, &seed[1..], &dict);
        b.insert(0, seed[0]);
        b
    });
    smoke::run("body_decode", harness::body_decode, seeds.into_iter().chain(gen));
}

#[test]
fn regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    // The skiff-api targets are replayed by skiff-api's fuzz_smoke test.
    let elsewhere = [
        "protobuf_decode", "json_patch", "merge_patch", "strategic_merge_patch", "server_side_apply",
        "label_selector", "field_selector", "quantity", "jsonpath", "validation",
    ];
    smoke::regressions(&root, harness::TARGETS, &elsewhere);
}
