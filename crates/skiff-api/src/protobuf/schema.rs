//! The field table behind the decoder: every Kubernetes protobuf message, its
//! fields (number, JSON name, type) and the kinds that travel in
//! `runtime.Unknown`, loaded once from `schema.txt`.
//!
//! The table is data rather than Rust code because it is generated (by
//! `crates/skiff-api/tools/gen_protobuf_schema.py`, from the `k8s-pb` and
//! `k8s-openapi` crate sources) and large; parsing it takes a few
//! milliseconds, once.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The generated table; see `tools/gen_protobuf_schema.py` for its line format.
const SCHEMA_TEXT: &str = include_str!("schema.txt");

/// Scalar protobuf types used by Kubernetes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    String,
    Int32,
    Int64,
    Bool,
    Double,
    Bytes,
}

/// What a field (or a map value) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Scalar(Scalar),
    /// Index into [`Schema::messages`].
    Message(usize),
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Single,
    Repeated,
    /// A map with string keys; the field type is the value type.
    Map,
}

/// One field of a message.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub tag: u32,
    /// The JSON name; unused when `inline`.
    pub json: &'static str,
    pub label: Label,
    pub ty: FieldType,
    /// A Go embedded struct (`json:",inline"`): its fields belong to the parent's JSON object.
    pub inline: bool,
    /// A zero scalar on the wire is printed, not dropped: the field is
    /// required, or its zero differs from unset (see the generator's rules).
    pub keep_zero: bool,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// An ordinary message: a JSON object.
    None,
    /// `metav1.Time`: RFC 3339 with seconds, `null` when zero.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds, `null` when zero.
    MicroTime,
    /// `metav1.Duration`: Go's duration string, e.g. `1h0m0s`.
    Duration,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// Raw JSON bytes (`metav1.FieldsV1`, apiextensions `JSON`).
    RawJson,
    /// `runtime.RawExtension`: JSON bytes, or an embedded protobuf object.
    RawExtension,
    /// A named string slice (`metav1.Verbs`, `ExtraValue`): a JSON array.
    StringList,
    /// `JSONSchemaPropsOrArray`: a schema, or an array of schemas.
    SchemaOrArray,
    /// `JSONSchemaPropsOrBool`: a schema, or a boolean.
    SchemaOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema, or an array of strings.
    SchemaOrStringArray,
}

/// One message type.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// `package.Name`, e.g. `apps.v1.Deployment`.
    pub name: &'static str,
    pub fields: Vec<Field>,
    pub special: Special,
    /// JSON keys in Go struct order, inlined structs expanded in place: the
    /// order Go prints them, which the wire (sorted by field number) may not keep.
    pub json_order: Vec<&'static str>,
}

impl Message {
    /// The field with protobuf number `tag`, if the message has one.
    pub fn field(&self, tag: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

/// All messages and kinds.
#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<Message>,
    /// (apiVersion, kind) -> message; apiVersion `*` matches any group version.
    kinds: HashMap<(&'static str, &'static str), usize>,
}

impl Schema {
    /// The process-wide table, parsed on first use.
    pub fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::parse(SCHEMA_TEXT))
    }

    /// The message carried for `api_version` and `kind`, if known.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.kinds
            .get(&(api_version, kind))
            .or_else(|| self.kinds.get(&("*", kind)))
            .copied()
    }

    /// Every (apiVersion, kind) pair in the table.
    #[cfg(test)]
    pub fn kind_names(&self) -> Vec<(&'static str, &'static str)> {
        self.kinds.keys().copied().collect()
    }

    /// The index of a message by its `package.Name`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn message_index(&self, name: &str) -> Option<usize> {
        self.messages.iter().position(|m| m.name == name)
    }

    /// Parses the generated table. Malformed lines are skipped rather than
    /// fatal: the table is ours and a unit test checks that none are skipped.
    fn parse(text: &'static str) -> Schema {
        let mut messages: Vec<Message> = Vec::new();
        // Field types name messages that may come later in the file, so they
        // are resolved in a second pass.
        let mut pending: Vec<(usize, usize, &'static str)> = Vec::new();
        let mut kind_lines = Vec::new();
        for line in text.lines() {
            let mut words = line.split(' ');
            match words.next() {
                Some("M") => {
                    let Some(name) = words.next() else { continue };
                    messages.push(Message {
                        name,
                        fields: Vec::new(),
                        special: special_for(name),
                        json_order: Vec::new(),
                    });
                }
                Some("F") => {
                    let (Some(tag), Some(json), Some(ty)) =
                        (words.next(), words.next(), words.next())
                    else {
                        continue;
                    };
                    let flags = words.next().unwrap_or("");
                    let owner = messages.len().wrapping_sub(1);
                    let (Ok(tag), Some(message)) = (tag.parse::<u32>(), messages.last_mut()) else {
                        continue;
                    };
                    let (label, ty) = match ty.as_bytes().first() {
                        Some(b'*') => (Label::Repeated, &ty[1..]),
                        Some(b'{') => (Label::Map, &ty[1..]),
                        _ => (Label::Single, ty),
                    };
                    let field_type = if let Some(target) = ty.strip_prefix("m:") {
                        pending.push((owner, message.fields.len(), target));
                        FieldType::Message(usize::MAX)
                    } else {
                        match scalar(ty) {
                            Some(s) => FieldType::Scalar(s),
                            None => continue,
                        }
                    };
                    message.fields.push(Field {
                        tag,
                        json,
                        label,
                        ty: field_type,
                        inline: json == "-",
                        keep_zero: flags.contains('k'),
                    });
                }
                Some("K") => kind_lines.push(line),
                _ => {}
            }
        }
        let by_name: HashMap<&'static str, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name, i))
            .collect();
        for (message, field, target) in pending {
            match by_name.get(target) {
                Some(&index) => messages[message].fields[field].ty = FieldType::Message(index),
                // An unresolvable reference would decode nothing useful; drop the field.
                None => messages[message].fields[field].tag = 0,
            }
        }
        for message in &mut messages {
            message.fields.retain(|f| f.tag != 0);
        }
        for index in 0..messages.len() {
            let mut order = Vec::new();
            json_order(&messages, index, 0, &mut order);
            messages[index].json_order = order;
        }
        let mut kinds = HashMap::new();
        for line in kind_lines {
            let words: Vec<&'static str> = line.split(' ').collect();
            if let [_, api_version, kind, message] = words[..] {
                if let Some(&index) = by_name.get(message) {
                    kinds.insert((api_version, kind), index);
                }
            }
        }
        Schema { messages, kinds }
    }
}

/// Appends the JSON keys of message `index`, expanding inlined structs.
/// `depth` guards against a (never generated) cycle of inlined structs.
fn json_order(messages: &[Message], index: usize, depth: usize, out: &mut Vec<&'static str>) {
    if depth > 8 {
        return;
    }
    for field in &messages[index].fields {
        match (field.inline, field.ty) {
            (true, FieldType::Message(target)) => json_order(messages, target, depth + 1, out),
            _ => out.push(field.json),
        }
    }
}

fn scalar(word: &str) -> Option<Scalar> {
    Some(match word {
        "s" => Scalar::String,
        "i32" => Scalar::Int32,
        "i64" => Scalar::Int64,
        "b" => Scalar::Bool,
        "d" => Scalar::Double,
        "y" => Scalar::Bytes,
        _ => return None,
    })
}

/// Recognises the messages with a custom JSON form, by name.
fn special_for(name: &str) -> Special {
    let short = name.rsplit('.').next().unwrap_or(name);
    match name {
        "meta.v1.Time" => Special::Time,
        "meta.v1.MicroTime" => Special::MicroTime,
        "meta.v1.Duration" => Special::Duration,
        "meta.v1.FieldsV1" => Special::RawJson,
        "meta.v1.Verbs" => Special::StringList,
        "api.resource.Quantity" | "api.resource.QuantityValue" => Special::Quantity,
        "util.intstr.IntOrString" => Special::IntOrString,
        "pkg.runtime.RawExtension" => Special::RawExtension,
        _ if name.starts_with("apiextensions.") => match short {
            "Json" => Special::RawJson,
            "JsonSchemaPropsOrArray" => Special::SchemaOrArray,
            "JsonSchemaPropsOrBool" => Special::SchemaOrBool,
            "JsonSchemaPropsOrStringArray" => Special::SchemaOrStringArray,
            _ => Special::None,
        },
        _ if short == "ExtraValue" => Special::StringList,
        _ => Special::None,
    }
}
