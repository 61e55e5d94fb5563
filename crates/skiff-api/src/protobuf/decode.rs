//! Protobuf bytes -> JSON, walking the generated field table.
//!
//! The output aims at what Go's JSON encoder prints for the decoded object:
//! field names are the JSON names, zero scalars of optional fields are dropped
//! unless the table marks them kept (a Go client writes every non-pointer
//! scalar, zero or not, while Go's JSON leaves out the zeros of `omitempty`
//! fields; see the generator for how the table decides), map keys are sorted,
//! and the special apimachinery types take their JSON form.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{FieldType, Label, Scalar, Schema, Special};
use super::wellknown::{double_value, format_duration, format_time};
use super::wire::{Reader, WireError, WireValue};
use super::{ProtobufError, MAGIC};

/// Nesting limit, so that crafted input cannot exhaust the stack. Real objects
/// (deep CRD schemas included) stay far below it.
pub(crate) const MAX_DEPTH: usize = 100;

/// A decoding failure with the JSON path where it happened.
#[derive(Debug)]
pub(crate) struct Fail {
    /// Path segments, innermost first (they are added while unwinding).
    segments: Vec<String>,
    reason: String,
}

impl Fail {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Fail {
            segments: Vec::new(),
            reason: reason.into(),
        }
    }

    /// Adds the enclosing field's segment (`name` or `[index]`).
    pub(crate) fn at(mut self, segment: impl Into<String>) -> Self {
        self.segments.push(segment.into());
        self
    }

    /// The public decoding error, naming the path like `spec.template.spec.containers[0]`.
    pub(crate) fn into_error(self) -> ProtobufError {
        let (path, reason) = self.parts();
        ProtobufError::Malformed { path, reason }
    }

    /// The public encoding error.
    pub(crate) fn into_encode_error(self) -> ProtobufError {
        let (path, reason) = self.parts();
        ProtobufError::Encode { path, reason }
    }

    fn parts(self) -> (String, String) {
        let mut path = String::new();
        for segment in self.segments.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        if path.is_empty() {
            path.push_str("the top level");
        }
        (path, self.reason)
    }
}

impl From<WireError> for Fail {
    fn from(error: WireError) -> Self {
        Fail::new(error.describe())
    }
}

/// Adds a path segment to the error of a `Result`.
pub(crate) trait At<T> {
    fn at(self, segment: impl Into<String>) -> Result<T, Fail>;
}

impl<T> At<T> for Result<T, Fail> {
    fn at(self, segment: impl Into<String>) -> Result<T, Fail> {
        self.map_err(|f| f.at(segment))
    }
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into a JSON object
/// with `kind` and `apiVersion` first.
pub(crate) fn decode_envelope(
    schema: &Schema,
    body: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    let data = body.strip_prefix(MAGIC).ok_or(ProtobufError::BadMagic)?;
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    let mut reader = Reader::new(data);
    let wire = |e: WireError| Fail::new(e.describe()).at("envelope").into_error();
    while let Some((tag, value)) = reader.next_field().map_err(wire)? {
        match (tag, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut inner = Reader::new(type_meta);
                while let Some((tag, value)) = inner.next_field().map_err(wire)? {
                    match (tag, value) {
                        (1, WireValue::Bytes(b)) => {
                            api_version = String::from_utf8_lossy(b).into_owned()
                        }
                        (2, WireValue::Bytes(b)) => kind = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            (3, WireValue::Bytes(b)) => encoding = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(encoding));
    }
    if kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let index = schema
        .kind(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let object = message_value(schema, index, raw, depth + 1).map_err(Fail::into_error)?;
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind));
    out.insert("apiVersion".into(), Value::String(api_version));
    if let Value::Object(fields) = object {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Decodes one message of type `index` into its JSON value.
pub(crate) fn message_value(
    schema: &Schema,
    index: usize,
    data: &[u8],
    depth: usize,
) -> Result<Value, Fail> {
    if depth > MAX_DEPTH {
        return Err(Fail::new(format!("nesting deeper than {MAX_DEPTH} levels")));
    }
    let message = &schema.messages[index];
    match message.special {
        Special::None => {
            let mut map = Map::new();
            decode_fields(schema, index, data, depth, &mut map)?;
            reorder(schema, index, &mut map);
            Ok(Value::Object(map))
        }
        Special::Time | Special::MicroTime => {
            // Go writes a zero time as an empty message; it prints as null.
            if data.is_empty() {
                return Ok(Value::Null);
            }
            let (mut seconds, mut nanos) = (0i64, 0i32);
            for_each_field(data, |tag, value| {
                match (tag, value) {
                    (1, WireValue::Varint(v)) => seconds = v as i64,
                    (2, WireValue::Varint(v)) => nanos = v as i32,
                    _ => {}
                }
                Ok(())
            })?;
            format_time(seconds, nanos, message.special == Special::MicroTime)
                .map(Value::String)
                .ok_or_else(|| Fail::new(format!("time {seconds}s is outside years 0-9999")))
        }
        Special::Duration => {
            let mut nanos = 0i64;
            for_each_field(data, |tag, value| {
                if let (1, WireValue::Varint(v)) = (tag, value) {
                    nanos = v as i64;
                }
                Ok(())
            })?;
            Ok(Value::String(format_duration(nanos)))
        }
        Special::Quantity => {
            let mut text = String::new();
            for_each_field(data, |tag, value| {
                if let (1, WireValue::Bytes(b)) = (tag, value) {
                    text = String::from_utf8_lossy(b).into_owned();
                }
                Ok(())
            })?;
            // The zero Quantity prints as "0".
            Ok(Value::String(if text.is_empty() {
                "0".into()
            } else {
                text
            }))
        }
        Special::IntOrString => {
            let (mut is_string, mut int_val, mut str_val) = (false, 0i32, String::new());
            for_each_field(data, |tag, value| {
                match (tag, value) {
                    (1, WireValue::Varint(v)) => is_string = v == 1,
                    (2, WireValue::Varint(v)) => int_val = v as i32,
                    (3, WireValue::Bytes(b)) => str_val = String::from_utf8_lossy(b).into_owned(),
                    _ => {}
                }
                Ok(())
            })?;
            Ok(if is_string {
                Value::String(str_val)
            } else {
                Value::Number(int_val.into())
            })
        }
        Special::RawJson | Special::RawExtension => {
            let mut raw: Option<&[u8]> = None;
            for_each_field(data, |tag, value| {
                if let (1, WireValue::Bytes(b)) = (tag, value) {
                    raw = Some(b);
                }
                Ok(())
            })?;
            match raw {
                None | Some([]) => Ok(Value::Null),
                // A client may embed an object in its own protobuf encoding.
                Some(bytes)
                    if message.special == Special::RawExtension && bytes.starts_with(MAGIC) =>
                {
                    decode_envelope(schema, bytes, depth).map_err(|e| Fail::new(e.to_string()))
                }
                Some(bytes) => serde_json::from_slice(bytes)
                    .map_err(|e| Fail::new(format!("raw field does not hold valid json: {e}"))),
            }
        }
        Special::StringList => {
            let mut items = Vec::new();
            for_each_field(data, |tag, value| {
                if let (1, WireValue::Bytes(b)) = (tag, value) {
                    items.push(Value::String(String::from_utf8_lossy(b).into_owned()));
                }
                Ok(())
            })?;
            Ok(Value::Array(items))
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            let mut map = Map::new();
            decode_fields(schema, index, data, depth, &mut map)?;
            let by_tag = |tag: u32| message.field(tag).and_then(|f| map.get(f.json)).cloned();
            Ok(match message.special {
                // Go prints the array form when it has items, else the schema (or null).
                Special::SchemaOrArray | Special::SchemaOrStringArray => {
                    match (by_tag(1), by_tag(2)) {
                        (_, Some(Value::Array(items))) if !items.is_empty() => Value::Array(items),
                        (Some(schema), _) => schema,
                        _ => Value::Null,
                    }
                }
                // The schema form when there is a schema, else the boolean.
                _ => by_tag(2).unwrap_or_else(|| Value::Bool(by_tag(1) == Some(Value::Bool(true)))),
            })
        }
    }
}

/// Calls `visit` for every field of a message, for the special types that read fields by number.
fn for_each_field<'a>(
    data: &'a [u8],
    mut visit: impl FnMut(u32, WireValue<'a>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let mut reader = Reader::new(data);
    while let Some((tag, value)) = reader.next_field()? {
        visit(tag, value)?;
    }
    Ok(())
}

/// Decodes the fields of message `index` into `map` (the parent's map for inlined structs).
fn decode_fields(
    schema: &Schema,
    index: usize,
    data: &[u8],
    depth: usize,
    map: &mut Map<String, Value>,
) -> Result<(), Fail> {
    if depth > MAX_DEPTH {
        return Err(Fail::new(format!("nesting deeper than {MAX_DEPTH} levels")));
    }
    let message = &schema.messages[index];
    let mut reader = Reader::new(data);
    while let Some((tag, value)) = reader.next_field()? {
        // Unknown fields are skipped, as every protobuf decoder does: newer
        // clients may send fields this table does not know yet.
        let Some(field) = message.field(tag) else {
            continue;
        };
        let name = field.json;
        match (field.label, field.ty) {
            (Label::Single, FieldType::Scalar(scalar)) => {
                let value = scalar_value(scalar, value).at(name)?;
                if field.keep_zero || !is_zero(&value) {
                    map.insert(name.to_string(), value);
                } else {
                    map.shift_remove(name);
                }
            }
            (Label::Single, FieldType::Message(target)) => {
                let bytes = expect_bytes(value).at(name)?;
                if field.inline {
                    decode_fields(schema, target, bytes, depth + 1, map)?;
                } else if schema.messages[target].special == Special::None {
                    // Protobuf merges repeated occurrences of a message field;
                    // decoding into the existing object does the same.
                    let entry = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    if let Value::Object(inner) = entry {
                        decode_fields(schema, target, bytes, depth + 1, inner).at(name)?;
                        reorder(schema, target, inner);
                    }
                } else {
                    // A zero time or empty raw value prints as null, as Go prints
                    // a non-pointer struct field whatever its value.
                    let value = message_value(schema, target, bytes, depth + 1).at(name)?;
                    map.insert(name.to_string(), value);
                }
            }
            (Label::Repeated, FieldType::Scalar(scalar)) => {
                let items = array_entry(map, name);
                match value {
                    WireValue::Bytes(packed)
                        if scalar != Scalar::String && scalar != Scalar::Bytes =>
                    {
                        unpack(scalar, packed, items).at(name)?;
                    }
                    _ => {
                        let index = items.len();
                        items.push(
                            scalar_value(scalar, value)
                                .at(format!("[{index}]"))
                                .at(name)?,
                        );
                    }
                }
            }
            (Label::Repeated, FieldType::Message(target)) => {
                let bytes = expect_bytes(value).at(name)?;
                let items = array_entry(map, name);
                let index = items.len();
                let item = message_value(schema, target, bytes, depth + 1)
                    .at(format!("[{index}]"))
                    .at(name)?;
                items.push(item);
            }
            (Label::Map, value_type) => {
                let bytes = expect_bytes(value).at(name)?;
                let (key, value) = map_entry(schema, value_type, bytes, depth + 1).at(name)?;
                let entry = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(inner) = entry {
                    inner.insert(key, value);
                }
            }
        }
    }
    // Go's JSON encoder prints map keys in sorted order.
    for field in message.fields.iter().filter(|f| f.label == Label::Map) {
        if let Some(Value::Object(inner)) = map.get_mut(field.json) {
            inner.sort_keys();
        }
    }
    Ok(())
}

/// Puts the keys of a decoded message in Go's struct order (the wire is in
/// field-number order, which differs for fields added later).
fn reorder(schema: &Schema, index: usize, map: &mut Map<String, Value>) {
    let mut rest = std::mem::take(map);
    for &key in &schema.messages[index].json_order {
        if let Some(value) = rest.shift_remove(key) {
            map.insert(key.to_string(), value);
        }
    }
    map.extend(rest);
}

/// The array stored under `name`, created when absent.
fn array_entry<'m>(map: &'m mut Map<String, Value>, name: &str) -> &'m mut Vec<Value> {
    let entry = map.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    match entry {
        Value::Array(items) => items,
        _ => unreachable!("entry was just made an array"),
    }
}

/// Decodes a map entry message `{1: key, 2: value}`; missing parts take their zero value.
fn map_entry(
    schema: &Schema,
    value_type: FieldType,
    data: &[u8],
    depth: usize,
) -> Result<(String, Value), Fail> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(data);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => key = String::from_utf8_lossy(expect_bytes(wire)?).into_owned(),
            2 => {
                value = Some(match value_type {
                    FieldType::Scalar(scalar) => scalar_value(scalar, wire)?,
                    FieldType::Message(target) => {
                        message_value(schema, target, expect_bytes(wire)?, depth)?
                    }
                })
            }
            _ => {}
        }
    }
    let value = match (value, value_type) {
        (Some(value), _) => value,
        (None, FieldType::Scalar(scalar)) => zero_value(scalar),
        (None, FieldType::Message(target)) => message_value(schema, target, &[], depth)?,
    };
    Ok((key, value))
}

fn expect_bytes(value: WireValue<'_>) -> Result<&[u8], Fail> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        other => Err(Fail::new(format!(
            "wire type {} where a length-delimited value was expected",
            other.wire_type()
        ))),
    }
}

/// Converts one scalar occurrence to JSON.
fn scalar_value(scalar: Scalar, value: WireValue<'_>) -> Result<Value, Fail> {
    Ok(match (scalar, value) {
        (Scalar::String, WireValue::Bytes(b)) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Scalar::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // Protobuf sign-extends negative int32 values to 64 bits; truncating recovers them.
        (Scalar::Int32, WireValue::Varint(v)) => Value::Number(Number::from(v as i32)),
        (Scalar::Int64, WireValue::Varint(v)) => Value::Number(Number::from(v as i64)),
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Double, WireValue::Fixed64(v)) => double_value(f64::from_bits(v)),
        (scalar, other) => {
            return Err(Fail::new(format!(
                "wire type {} does not fit a {} field",
                other.wire_type(),
                scalar_name(scalar)
            )))
        }
    })
}

/// Reads a packed run of numeric scalars.
fn unpack(scalar: Scalar, data: &[u8], items: &mut Vec<Value>) -> Result<(), Fail> {
    if scalar == Scalar::Double {
        let chunks = data.chunks_exact(8);
        if !chunks.remainder().is_empty() {
            return Err(Fail::new(
                "packed doubles are not a multiple of eight bytes",
            ));
        }
        for chunk in chunks {
            let mut array = [0u8; 8];
            array.copy_from_slice(chunk);
            items.push(double_value(f64::from_le_bytes(array)));
        }
        return Ok(());
    }
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        items.push(scalar_value(scalar, WireValue::Varint(reader.varint()?))?);
    }
    Ok(())
}

fn scalar_name(scalar: Scalar) -> &'static str {
    match scalar {
        Scalar::String => "string",
        Scalar::Int32 => "int32",
        Scalar::Int64 => "int64",
        Scalar::Bool => "bool",
        Scalar::Double => "double",
        Scalar::Bytes => "bytes",
    }
}

fn zero_value(scalar: Scalar) -> Value {
    match scalar {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Int32 | Scalar::Int64 | Scalar::Double => Value::Number(0.into()),
        Scalar::Bool => Value::Bool(false),
    }
}

/// Whether a decoded scalar is Go's zero value (what `omitempty` drops).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}
