//! JSON -> protobuf, the inverse of `decode.rs`, for replies to clients that
//! ask for protobuf. Fields are written in the table's order (Go's struct
//! order, as Go writes them); JSON keys the type does not have are skipped.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::decode::{At, Fail, MAX_DEPTH};
use super::schema::{FieldType, Label, Scalar, Schema, Special};
use super::wellknown::{parse_duration, parse_time};
use super::wire::Writer;
use super::{ProtobufError, MAGIC};

/// Encodes an object with `apiVersion` and `kind` into a `k8s\0` + `runtime.Unknown` body.
pub(crate) fn encode_envelope(schema: &Schema, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let index = schema
        .kind(api_version, kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })?;
    let raw = encode_message(schema, index, object, 1).map_err(Fail::into_encode_error)?;
    let mut type_meta = Writer::default();
    type_meta.bytes_field(1, api_version.as_bytes());
    type_meta.bytes_field(2, kind.as_bytes());
    let mut out = Writer {
        buf: MAGIC.to_vec(),
    };
    out.bytes_field(1, &type_meta.buf);
    out.bytes_field(2, &raw);
    // Go always writes the (empty) contentEncoding and contentType.
    out.bytes_field(3, b"");
    out.bytes_field(4, b"");
    Ok(out.buf)
}

/// Encodes `value` as message `index`.
fn encode_message(
    schema: &Schema,
    index: usize,
    value: &Value,
    depth: usize,
) -> Result<Vec<u8>, Fail> {
    if depth > MAX_DEPTH {
        return Err(Fail::new(format!("nesting deeper than {MAX_DEPTH} levels")));
    }
    let message = &schema.messages[index];
    let mut out = Writer::default();
    match message.special {
        Special::None => {
            let empty = Map::new();
            let object = match value {
                Value::Object(object) => object,
                Value::Null => &empty,
                _ => return Err(Fail::new("expected an object")),
            };
            encode_fields(schema, index, object, depth, &mut out)?;
        }
        Special::Time | Special::MicroTime => match value {
            Value::Null => {}
            Value::String(text) => {
                let (seconds, nanos) = parse_time(text)
                    .ok_or_else(|| Fail::new(format!("{text:?} is not an rfc 3339 time")))?;
                out.varint_field(1, seconds as u64);
                if message.special == Special::MicroTime {
                    out.varint_field(2, i64::from(nanos) as u64);
                }
            }
            _ => return Err(Fail::new("expected a time string")),
        },
        Special::Duration => {
            let text = value
                .as_str()
                .ok_or_else(|| Fail::new("expected a duration string"))?;
            let nanos = parse_duration(text)
                .ok_or_else(|| Fail::new(format!("{text:?} is not a duration")))?;
            out.varint_field(1, nanos as u64);
        }
        Special::Quantity => {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => return Err(Fail::new("expected a quantity string")),
            };
            out.bytes_field(1, text.as_bytes());
        }
        Special::IntOrString => match value {
            Value::Number(number) => {
                let int = number.as_i64().and_then(|n| i32::try_from(n).ok());
                let int = int.ok_or_else(|| Fail::new("int-or-string number is not an int32"))?;
                out.varint_field(1, 0);
                out.varint_field(2, i64::from(int) as u64);
                out.bytes_field(3, b"");
            }
            Value::String(text) => {
                out.varint_field(1, 1);
                out.varint_field(2, 0);
                out.bytes_field(3, text.as_bytes());
            }
            _ => return Err(Fail::new("expected a number or a string")),
        },
        Special::RawJson | Special::RawExtension => {
            if !value.is_null() {
                let raw = serde_json::to_vec(value).map_err(|e| Fail::new(e.to_string()))?;
                out.bytes_field(1, &raw);
            }
        }
        Special::StringList => {
            for (i, item) in value
                .as_array()
                .ok_or_else(|| Fail::new("expected an array"))?
                .iter()
                .enumerate()
            {
                let text = item
                    .as_str()
                    .ok_or_else(|| Fail::new("expected a string").at(format!("[{i}]")))?;
                out.bytes_field(1, text.as_bytes());
            }
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            encode_schema_or(schema, index, value, depth, &mut out)?;
        }
    }
    Ok(out.buf)
}

/// The `JSONSchemaPropsOr*` unions: field 1 and 2 hold the two alternatives.
fn encode_schema_or(
    schema: &Schema,
    index: usize,
    value: &Value,
    depth: usize,
    out: &mut Writer,
) -> Result<(), Fail> {
    let message = &schema.messages[index];
    let target = |tag: u32| match message.field(tag).map(|f| f.ty) {
        Some(FieldType::Message(target)) => Some(target),
        _ => None,
    };
    match (message.special, value) {
        (_, Value::Null) => {}
        (Special::SchemaOrBool, Value::Bool(allows)) => out.varint_field(1, u64::from(*allows)),
        (Special::SchemaOrBool, Value::Object(_)) => {
            let target =
                target(2).ok_or_else(|| Fail::new("schema table lacks the schema field"))?;
            out.varint_field(1, 1);
            out.bytes_field(2, &encode_message(schema, target, value, depth + 1)?);
        }
        (Special::SchemaOrArray | Special::SchemaOrStringArray, Value::Object(_)) => {
            let target =
                target(1).ok_or_else(|| Fail::new("schema table lacks the schema field"))?;
            out.bytes_field(1, &encode_message(schema, target, value, depth + 1)?);
        }
        (Special::SchemaOrArray, Value::Array(items)) => {
            let target =
                target(2).ok_or_else(|| Fail::new("schema table lacks the schemas field"))?;
            for (i, item) in items.iter().enumerate() {
                out.bytes_field(
                    2,
                    &encode_message(schema, target, item, depth + 1).at(format!("[{i}]"))?,
                );
            }
        }
        (Special::SchemaOrStringArray, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let text = item
                    .as_str()
                    .ok_or_else(|| Fail::new("expected a string").at(format!("[{i}]")))?;
                out.bytes_field(2, text.as_bytes());
            }
        }
        _ => return Err(Fail::new("value does not fit this json schema union")),
    }
    Ok(())
}

/// Writes the fields of message `index` found in `object`.
fn encode_fields(
    schema: &Schema,
    index: usize,
    object: &Map<String, Value>,
    depth: usize,
    out: &mut Writer,
) -> Result<(), Fail> {
    let message = &schema.messages[index];
    for field in &message.fields {
        if field.inline {
            // An embedded Go struct: its fields live in this same JSON object.
            if let FieldType::Message(target) = field.ty {
                let mut inner = Writer::default();
                if depth + 1 > MAX_DEPTH {
                    return Err(Fail::new(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                encode_fields(schema, target, object, depth + 1, &mut inner)?;
                out.bytes_field(field.tag, &inner.buf);
            }
            continue;
        }
        let name = field.json;
        let Some(value) = object.get(name) else {
            continue;
        };
        if value.is_null() {
            // Go prints a zero (non-pointer) time as null and writes it as an
            // empty message; doing the same keeps decode(encode(x)) == x.
            if let (Label::Single, FieldType::Message(target)) = (field.label, field.ty) {
                if matches!(
                    schema.messages[target].special,
                    Special::Time | Special::MicroTime
                ) {
                    out.bytes_field(field.tag, b"");
                }
            }
            continue;
        }
        match field.label {
            Label::Single => {
                write_value(schema, field.tag, field.ty, value, depth, out).at(name)?
            }
            Label::Repeated => {
                let items = value
                    .as_array()
                    .ok_or_else(|| Fail::new("expected an array").at(name))?;
                for (i, item) in items.iter().enumerate() {
                    write_value(schema, field.tag, field.ty, item, depth, out)
                        .at(format!("[{i}]"))
                        .at(name)?;
                }
            }
            Label::Map => {
                let entries = value
                    .as_object()
                    .ok_or_else(|| Fail::new("expected an object").at(name))?;
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort();
                for key in keys {
                    let mut entry = Writer::default();
                    entry.bytes_field(1, key.as_bytes());
                    write_value(schema, 2, field.ty, &entries[key], depth, &mut entry)
                        .at(key.clone())
                        .at(name)?;
                    out.bytes_field(field.tag, &entry.buf);
                }
            }
        }
    }
    Ok(())
}

/// Writes one value of a field (or a map entry's value) under `tag`.
fn write_value(
    schema: &Schema,
    tag: u32,
    ty: FieldType,
    value: &Value,
    depth: usize,
    out: &mut Writer,
) -> Result<(), Fail> {
    match ty {
        FieldType::Message(target) => {
            out.bytes_field(tag, &encode_message(schema, target, value, depth + 1)?)
        }
        FieldType::Scalar(Scalar::String) => out.bytes_field(
            tag,
            value
                .as_str()
                .ok_or_else(|| Fail::new("expected a string"))?
                .as_bytes(),
        ),
        FieldType::Scalar(Scalar::Bytes) => {
            let text = value
                .as_str()
                .ok_or_else(|| Fail::new("expected a base64 string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| Fail::new(format!("invalid base64: {e}")))?;
            out.bytes_field(tag, &bytes);
        }
        FieldType::Scalar(Scalar::Bool) => out.varint_field(
            tag,
            u64::from(
                value
                    .as_bool()
                    .ok_or_else(|| Fail::new("expected a boolean"))?,
            ),
        ),
        FieldType::Scalar(Scalar::Int32) => {
            let number = integer(value)?;
            let number = i32::try_from(number)
                .map_err(|_| Fail::new(format!("{number} does not fit an int32")))?;
            // Negative int32 values are sign-extended to ten bytes, as protobuf requires.
            out.varint_field(tag, i64::from(number) as u64);
        }
        FieldType::Scalar(Scalar::Int64) => out.varint_field(tag, integer(value)? as u64),
        FieldType::Scalar(Scalar::Double) => out.double_field(
            tag,
            value
                .as_f64()
                .ok_or_else(|| Fail::new("expected a number"))?,
        ),
    }
    Ok(())
}

/// A JSON number as an integer, accepting integral floats like `3.0`.
fn integer(value: &Value) -> Result<i64, Fail> {
    if let Some(number) = value.as_i64() {
        return Ok(number);
    }
    match value.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 9.2e18 => Ok(float as i64),
        _ => Err(Fail::new("expected an integer")),
    }
}
