//! Deterministic input generation for the fuzz smoke tests (`crates/*/tests/fuzz_smoke.rs`):
//! a seeded RNG and mutators for bytes, token strings and JSON documents. Not used by the
//! cargo-fuzz targets (libFuzzer has its own mutator); it lives here so both smoke tests
//! share it.

use serde_json::{Map, Number, Value};

/// SplitMix64: small, fast and good enough to drive mutations reproducibly.
pub struct Rng(u64);

impl Rng {
    /// An RNG seeded with `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that often sit on boundaries.
const INTERESTING_BYTES: &[u8] = &[0x00, 0x01, 0x02, 0x07, 0x08, 0x0a, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0xff, 0xfe];

/// A few random bytes of length below `max_len`.
pub fn random_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// `seed` with one to four byte-level mutations: bit flips, interesting bytes, insertions,
/// deletions, truncation, duplicated chunks, dictionary tokens, random runs.
pub fn mutate_bytes(rng: &mut Rng, seed: &[u8], dict: &[&str]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = *rng.pick(INTERESTING_BYTES);
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next_u64() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                v.drain(i..i + n);
            }
            4 if len > 0 => v.truncate(rng.below(len)),
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            6 if !dict.is_empty() => {
                let i = rng.below(len + 1);
                let tok = rng.pick(dict).as_bytes().to_vec();
                v.splice(i..i, tok);
            }
            7 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                for b in &mut v[i..i + n] {
                    *b = rng.next_u64() as u8;
                }
            }
            _ => {
                // Varint-ish: a run of continuation bytes, a classic protobuf edge.
                let i = rng.below(len + 1);
                let n = 1 + rng.below(11);
                v.splice(i..i, std::iter::repeat_n(0xff, n));
            }
        }
    }
    v
}

/// A string of up to `max_tokens` tokens from `alphabet`.
pub fn token_string(rng: &mut Rng, alphabet: &[&str], max_tokens: usize) -> String {
    (0..rng.below(max_tokens + 1)).map(|_| *rng.pick(alphabet)).collect()
}

/// `seed` with one to three token-level edits (insert, delete, replace a char with a token).
pub fn mutate_string(rng: &mut Rng, seed: &str, alphabet: &[&str]) -> String {
    let mut chars: Vec<String> = seed.chars().map(String::from).collect();
    for _ in 0..1 + rng.below(3) {
        let len = chars.len();
        match rng.below(4) {
            0 => chars.insert(rng.below(len + 1), rng.pick(alphabet).to_string()),
            1 if len > 0 => {
                chars.remove(rng.below(len));
            }
            2 if len > 0 => {
                let i = rng.below(len);
                chars[i] = rng.pick(alphabet).to_string();
            }
            _ if len > 0 => {
                let i = rng.below(len);
                let dup = chars[i..].join("");
                chars.insert(i, dup);
            }
            _ => {}
        }
    }
    chars.concat()
}

/// Strings that stress Kubernetes-flavoured code: patch directives, field paths, pointers,
/// quantities, names, unicode, control characters.
const STRINGS: &[&str] = &[
    "", "a", "web", "nginx", "default", "-", "0", "01", "-1", "1e3", "~", "~0", "~1", "~2", "/", "//",
    "$patch", "delete", "replace", "merge", "$retainKeys", "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers", "f:spec", "k:{\"name\":\"nginx\"}", "k:{", "v:1", "i:0",
    ".", "100m", "1Ki", "1.5Gi", "9999999999999999999999Ei", "NaN", "é", "\u{0}", "\u{feff}", "日本",
    "apps/v1", "v1", "Deployment", "TCP", "UDP", "Always", "FieldsV1", "Apply", "Update",
    "2025-01-01T00:00:00Z", "not-a-time", "a.b.c", "UPPER", "x_y", "a..b", "\u{a0}", "a\u{2003}b",
];

/// Keys worth inserting into objects.
const KEYS: &[&str] = &[
    "$patch", "$retainKeys", "$setElementOrder/containers", "$setElementOrder/env",
    "$setElementOrder/ports", "$deleteFromPrimitiveList/finalizers", "$setElementOrder/finalizers",
    "name", "containerPort", "protocol", "image", "containers", "initContainers", "env", "ports",
    "volumes", "volumeMounts", "metadata", "spec", "status", "template", "selector", "matchLabels",
    "matchExpressions", "labels", "annotations", "finalizers", "ownerReferences", "managedFields",
    "fieldsV1", "fieldsType", "manager", "operation", "apiVersion", "kind", "replicas", "resources",
    "limits", "requests", "tolerations", "key", "values", "operator", "rules", "subjects", "roleRef",
    "data", "stringData", "type", "clusterIP", "clusterIPs", "nodePort", "targetPort",
    "f:spec", "f:metadata", "f:name", "k:{\"name\":\"nginx\"}", ".", "uid", "generateName",
    "namespace", "resourceVersion", "deletionTimestamp", "schedule", "jobTemplate", "strategy",
];

/// A random number, biased towards boundaries.
fn random_number(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(i64::MAX),
        3 => Value::from(i64::MIN),
        4 => Value::from(u64::MAX),
        5 => Number::from_f64(1e308).map(Value::Number).unwrap_or(Value::Null),
        6 => Number::from_f64(-0.5).map(Value::Number).unwrap_or(Value::Null),
        7 => Value::from(65536),
        8 => Value::from((1i64 << 53) + 1),
        _ => Value::from(rng.below(100) as i64),
    }
}

/// A random JSON value of depth at most `depth`.
pub fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let top = if depth == 0 { 4 } else { 6 };
    match rng.below(top) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => random_number(rng),
        3 => Value::String(rng.pick(STRINGS).to_string()),
        4 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(KEYS).to_string(), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// One structural edit at a random node of `v`.
fn mutate_node(rng: &mut Rng, v: &mut Value) {
    // Descend to a random node.
    let mut node = v;
    loop {
        let n = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if n == 0 || rng.one_in(4) {
            break;
        }
        let i = rng.below(n);
        node = match node {
            Value::Object(m) => m.values_mut().nth(i).expect("index below len"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    match node {
        Value::Object(m) => match rng.below(5) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                let key = m.keys().nth(i).cloned().expect("index below len");
                m.remove(&key);
            }
            1 => {
                let dir = *rng.pick(&["delete", "replace", "merge", "bogus"]);
                m.insert("$patch".into(), Value::String(dir.into()));
            }
            2 => {
                let keys: Vec<Value> = m.keys().take(rng.below(3)).map(|k| Value::String(k.clone())).collect();
                m.insert("$retainKeys".into(), Value::Array(keys));
            }
            _ => {
                m.insert(rng.pick(KEYS).to_string(), random_value(rng, 3));
            }
        },
        Value::Array(a) => match rng.below(5) {
            0 if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            1 if !a.is_empty() => {
                let e = a[rng.below(a.len())].clone();
                a.push(e);
            }
            2 => a.reverse(),
            3 => a.push(Value::Object(Map::from_iter([("$patch".to_string(), Value::from("delete"))]))),
            _ => a.push(random_value(rng, 3)),
        },
        other => *other = random_value(rng, 3),
    }
}

/// `seed` with one to four structural edits: removed or added keys, patch directives,
/// retyped values, boundary numbers, duplicated or deleted list elements.
pub fn mutate_json(rng: &mut Rng, seed: &Value) -> Value {
    let mut v = seed.clone();
    for _ in 0..1 + rng.below(4) {
        if rng.one_in(20) {
            v = random_value(rng, 4);
        } else {
            mutate_node(rng, &mut v);
        }
    }
    v
}

/// A random sub-document of `v` (possibly `v` itself), for use as a patch.
pub fn random_subtree(rng: &mut Rng, v: &Value) -> Value {
    let mut node = v;
    while rng.one_in(3) {
        let next = match node {
            Value::Object(m) if !m.is_empty() => m.values().nth(rng.below(m.len())),
            Value::Array(a) if !a.is_empty() => a.get(rng.below(a.len())),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.clone()
}

/// A JSON pointer into `v` (RFC 6901): mostly a real path, sometimes ending in a bent
/// segment (past the end, `-`, escapes, leading zeros, huge indices).
pub fn random_pointer(rng: &mut Rng, v: &Value) -> String {
    let mut out = String::new();
    let mut node = v;
    for _ in 0..rng.below(8) {
        let seg = match node {
            Value::Object(m) if !m.is_empty() && !rng.one_in(8) => {
                let (k, child) = m.iter().nth(rng.below(m.len())).expect("index below len");
                node = child;
                k.replace('~', "~0").replace('/', "~1")
            }
            Value::Array(a) if !a.is_empty() && !rng.one_in(8) => {
                let i = rng.below(a.len());
                node = &a[i];
                i.to_string()
            }
            _ => {
                if rng.one_in(3) {
                    let bent = ["-", "0", "01", "-1", "99999999999999999999", "", "~", "~2", "x", "a~1b", "1"];
                    out.push('/');
                    out.push_str(bent[rng.below(bent.len())]);
                }
                break;
            }
        };
        out.push('/');
        out.push_str(&seg);
    }
    out
}

/// An RFC 6902 patch of one to four operations against `doc`, mostly applicable.
pub fn random_json_patch(rng: &mut Rng, doc: &Value) -> Value {
    let ops = ["add", "add", "add", "replace", "replace", "replace", "remove", "remove", "move", "copy", "test"];
    let patch: Vec<Value> = (0..1 + rng.below(4))
        .map(|_| {
            let mut op = Map::new();
            let name = if rng.one_in(50) { "bogus" } else { *rng.pick(&ops) };
            op.insert("op".into(), Value::from(name));
            if !rng.one_in(30) {
                op.insert("path".into(), Value::from(random_pointer(rng, doc)));
            }
            if matches!(name, "move" | "copy") || rng.one_in(10) {
                op.insert("from".into(), Value::from(random_pointer(rng, doc)));
            }
            if matches!(name, "add" | "replace" | "test") || rng.one_in(10) {
                let value = if rng.one_in(2) { random_subtree(rng, doc) } else { random_value(rng, 3) };
                op.insert("value".into(), value);
            }
            Value::Object(op)
        })
        .collect();
    Value::Array(patch)
}

/// `a \0 b`: the two-document input format of the patch and apply harnesses.
pub fn join(a: &Value, b: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(a).expect("values serialize");
    out.push(0);
    out.extend(serde_json::to_vec(b).expect("values serialize"));
    out
}
