//! The swagger 2.0 document in protocol buffers, as kubectl fetches `/openapi/v2`.
//!
//! client-go asks for `/openapi/v2` with `Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes the body as the
//! `openapi.v2.Document` message of gnostic's `OpenAPIv2.proto`, with no JSON fallback; kubectl
//! 1.27 and 1.28 need it for `kubectl apply` and client-side validation. This encodes the JSON
//! document produced by [`super::v2_document`] into that message by hand: the subset of the schema
//! the documents use, field numbers from the `.proto` definition. Vendor extensions and free-form
//! values (`default`, `enum`, `example`) travel as YAML text in `Any.yaml`; JSON is valid YAML, so
//! they are written as compact JSON.

use serde_json::{Map, Value};

/// Media type clients put in `Accept` when they want the protobuf form of `/openapi/v2`.
pub const V2_PROTOBUF_MEDIA_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `Content-Type` of the protobuf response. Not the `Accept` value: Go's `mime.ParseMediaType`
/// rejects the `@`, and client-go fails the whole request when it cannot parse the content type.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A protobuf message being written.
#[derive(Default)]
struct Pb(Vec<u8>);

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// Proto3 leaves empty strings out.
    fn string(&mut self, field: u64, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn str_value(&mut self, field: u64, v: Option<&Value>) {
        if let Some(Value::String(s)) = v {
            self.string(field, s);
        }
    }

    fn bool_value(&mut self, field: u64, v: Option<&Value>) {
        if let Some(Value::Bool(true)) = v {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int_value(&mut self, field: u64, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64) {
            if n != 0 {
                self.key(field, VARINT);
                // int64 is two's complement in a varint.
                self.varint(n as u64);
            }
        }
    }

    fn double_value(&mut self, field: u64, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_f64) {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&n.to_bits().to_le_bytes());
        }
    }

    fn strings(&mut self, field: u64, v: Option<&Value>) {
        match v {
            Some(Value::Array(list)) => {
                for s in list.iter().filter_map(Value::as_str) {
                    self.bytes(field, s.as_bytes());
                }
            }
            Some(Value::String(s)) => self.bytes(field, s.as_bytes()),
            _ => {}
        }
    }

    fn message(&mut self, field: u64, write: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        write(&mut inner);
        self.bytes(field, &inner.0);
    }

    /// `Any { yaml = 2 }`.
    fn any(&mut self, field: u64, v: &Value) {
        self.message(field, |m| m.string(2, &v.to_string()));
    }

    /// `repeated NamedAny` for every `x-` key of an object.
    fn extensions(&mut self, field: u64, obj: &Map<String, Value>) {
        for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(field, |m| {
                m.string(1, k);
                m.any(2, v);
            });
        }
    }
}

/// Encodes a swagger 2.0 document (as built by [`super::v2_document`]) as `openapi.v2.Document`.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    let mut pb = Pb::default();
    let Some(d) = doc.as_object() else {
        return pb.0;
    };
    pb.str_value(1, d.get("swagger"));
    if let Some(Value::Object(info)) = d.get("info") {
        pb.message(2, |m| {
            m.str_value(1, info.get("title"));
            m.str_value(2, info.get("version"));
            m.str_value(3, info.get("description"));
        });
    }
    pb.strings(5, d.get("schemes"));
    pb.strings(6, d.get("consumes"));
    pb.strings(7, d.get("produces"));
    if let Some(Value::Object(paths)) = d.get("paths") {
        pb.message(8, |m| {
            for (path, item) in paths {
                if let Value::Object(item) = item {
                    m.message(2, |n| {
                        n.string(1, path);
                        n.message(2, |p| path_item(p, item));
                    });
                }
            }
        });
    }
    if let Some(Value::Object(defs)) = d.get("definitions") {
        pb.message(9, |m| named_schemas(m, defs));
    }
    if let Some(Value::Object(params)) = d.get("parameters") {
        pb.message(10, |m| {
            for (name, p) in params {
                if let Value::Object(p) = p {
                    m.message(1, |n| {
                        n.string(1, name);
                        n.message(2, |v| parameter(v, p));
                    });
                }
            }
        });
    }
    if let Some(Value::Array(reqs)) = d.get("security") {
        for req in reqs.iter().filter_map(Value::as_object) {
            pb.message(12, |m| {
                for (name, scopes) in req {
                    m.message(1, |n| {
                        n.string(1, name);
                        n.message(2, |s| s.strings(1, Some(scopes)));
                    });
                }
            });
        }
    }
    if let Some(Value::Object(schemes)) = d.get("securityDefinitions") {
        pb.message(13, |m| {
            for (name, s) in schemes {
                let Value::Object(s) = s else { continue };
                // Only API-key schemes are used (bearer tokens in the authorization header).
                m.message(1, |n| {
                    n.string(1, name);
                    n.message(2, |item| {
                        item.message(2, |k| {
                            k.str_value(1, s.get("type"));
                            k.str_value(2, s.get("name"));
                            k.str_value(3, s.get("in"));
                            k.str_value(4, s.get("description"));
                        });
                    });
                });
            }
        });
    }
    pb.extensions(16, d);
    pb.0
}

fn path_item(pb: &mut Pb, item: &Map<String, Value>) {
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(Value::Object(op)) = item.get(method) {
            pb.message(field, |m| operation(m, op));
        }
    }
    parameters_items(pb, 9, item.get("parameters"));
    pb.extensions(10, item);
}

fn operation(pb: &mut Pb, op: &Map<String, Value>) {
    pb.strings(1, op.get("tags"));
    pb.str_value(2, op.get("summary"));
    pb.str_value(3, op.get("description"));
    pb.str_value(5, op.get("operationId"));
    pb.strings(6, op.get("produces"));
    pb.strings(7, op.get("consumes"));
    parameters_items(pb, 8, op.get("parameters"));
    if let Some(Value::Object(responses)) = op.get("responses") {
        pb.message(9, |m| {
            for (code, r) in responses {
                let Value::Object(r) = r else { continue };
                m.message(1, |n| {
                    n.string(1, code);
                    n.message(2, |v| {
                        // ResponseValue.response = 1
                        v.message(1, |resp| {
                            resp.str_value(1, r.get("description"));
                            if let Some(Value::Object(s)) = r.get("schema") {
                                resp.message(2, |item| item.message(1, |sch| schema(sch, s)));
                            }
                            resp.extensions(5, r);
                        });
                    });
                });
            }
        });
    }
    pb.strings(10, op.get("schemes"));
    pb.bool_value(11, op.get("deprecated"));
    pb.extensions(13, op);
}

/// `repeated ParametersItem`: either a parameter or a reference to a shared one.
fn parameters_items(pb: &mut Pb, field: u64, params: Option<&Value>) {
    let Some(Value::Array(params)) = params else {
        return;
    };
    for p in params.iter().filter_map(Value::as_object) {
        pb.message(field, |m| match p.get("$ref") {
            Some(r) => m.message(2, |j| {
                j.str_value(1, Some(r));
                j.str_value(2, p.get("description"));
            }),
            None => m.message(1, |v| parameter(v, p)),
        });
    }
}

/// `Parameter`: a body parameter, or a query/path/header parameter.
fn parameter(pb: &mut Pb, p: &Map<String, Value>) {
    let location = p.get("in").and_then(Value::as_str).unwrap_or("query");
    if location == "body" {
        pb.message(1, |b| {
            b.str_value(1, p.get("description"));
            b.str_value(2, p.get("name"));
            b.str_value(3, p.get("in"));
            b.bool_value(4, p.get("required"));
            if let Some(Value::Object(s)) = p.get("schema") {
                b.message(5, |sch| schema(sch, s));
            }
            b.extensions(6, p);
        });
        return;
    }
    pb.message(2, |nb| {
        // NonBodyParameter: header = 1, formData = 2, query = 3, path = 4. Query and form-data
        // sub-schemas number their fields one higher than path and header ones from `type` on,
        // because of `allow_empty_value` (5).
        let (field, shift) = match location {
            "header" => (1, 0),
            "formData" => (2, 1),
            "path" => (4, 0),
            _ => (3, 1),
        };
        nb.message(field, |q| {
            q.bool_value(1, p.get("required"));
            q.str_value(2, p.get("in"));
            q.str_value(3, p.get("description"));
            q.str_value(4, p.get("name"));
            if shift == 1 {
                q.bool_value(5, p.get("allowEmptyValue"));
            }
            q.str_value(5 + shift, p.get("type"));
            q.str_value(6 + shift, p.get("format"));
            q.bool_value(19 + shift, p.get("uniqueItems"));
            q.extensions(22 + shift, p);
        });
    });
}

fn named_schemas(pb: &mut Pb, schemas: &Map<String, Value>) {
    for (name, s) in schemas {
        let Value::Object(s) = s else { continue };
        pb.message(1, |n| {
            n.string(1, name);
            n.message(2, |v| schema(v, s));
        });
    }
}

/// `Schema`, field by field.
fn schema(pb: &mut Pb, s: &Map<String, Value>) {
    pb.str_value(1, s.get("$ref"));
    pb.str_value(2, s.get("format"));
    pb.str_value(3, s.get("title"));
    pb.str_value(4, s.get("description"));
    if let Some(v) = s.get("default") {
        pb.any(5, v);
    }
    pb.double_value(6, s.get("multipleOf"));
    pb.double_value(7, s.get("maximum"));
    pb.bool_value(8, s.get("exclusiveMaximum"));
    pb.double_value(9, s.get("minimum"));
    pb.bool_value(10, s.get("exclusiveMinimum"));
    pb.int_value(11, s.get("maxLength"));
    pb.int_value(12, s.get("minLength"));
    pb.str_value(13, s.get("pattern"));
    pb.int_value(14, s.get("maxItems"));
    pb.int_value(15, s.get("minItems"));
    pb.bool_value(16, s.get("uniqueItems"));
    pb.int_value(17, s.get("maxProperties"));
    pb.int_value(18, s.get("minProperties"));
    pb.strings(19, s.get("required"));
    if let Some(Value::Array(values)) = s.get("enum") {
        for v in values {
            pb.any(20, v);
        }
    }
    match s.get("additionalProperties") {
        Some(Value::Object(a)) => pb.message(21, |m| m.message(1, |sch| schema(sch, a))),
        Some(Value::Bool(b)) => pb.message(21, |m| {
            m.key(2, VARINT);
            m.varint(u64::from(*b));
        }),
        _ => {}
    }
    if let Some(t) = s.get("type") {
        pb.message(22, |m| m.strings(1, Some(t)));
    }
    match s.get("items") {
        Some(Value::Object(i)) => pb.message(23, |m| m.message(1, |sch| schema(sch, i))),
        Some(Value::Array(list)) => pb.message(23, |m| {
            for i in list.iter().filter_map(Value::as_object) {
                m.message(1, |sch| schema(sch, i));
            }
        }),
        _ => {}
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for a in all.iter().filter_map(Value::as_object) {
            pb.message(24, |sch| schema(sch, a));
        }
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        pb.message(25, |m| named_schemas(m, props));
    }
    pb.str_value(26, s.get("discriminator"));
    pb.bool_value(27, s.get("readOnly"));
    if let Some(v) = s.get("example") {
        pb.any(30, v);
    }
    pb.extensions(31, s);
}
