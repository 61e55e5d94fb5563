//! The protobuf wire format: a bounds-checked reader and a small writer.
//!
//! Every read checks the remaining length first, so no input can make the
//! decoder index out of bounds or allocate more than the input's size.

/// Wire type of varint-encoded scalars (int32, int64, bool).
pub(crate) const VARINT: u8 = 0;
/// Wire type of 8-byte little-endian scalars (double).
pub(crate) const FIXED64: u8 = 1;
/// Wire type of strings, bytes, messages and packed repeated scalars.
pub(crate) const LEN: u8 = 2;
/// Wire type of 4-byte little-endian scalars (float, never used by Kubernetes).
pub(crate) const FIXED32: u8 = 5;

/// What went wrong while reading raw wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The data ended inside a value.
    Truncated,
    /// A varint ran past ten bytes.
    VarintTooLong,
    /// Groups (wire types 3 and 4, deprecated) or an undefined wire type.
    BadWireType(u8),
    /// Field number zero, which protobuf forbids.
    ZeroField,
}

impl WireError {
    /// A lowercase description for error messages.
    pub fn describe(self) -> String {
        match self {
            WireError::Truncated => "truncated message".to_string(),
            WireError::VarintTooLong => "varint longer than ten bytes".to_string(),
            WireError::BadWireType(t) => format!("unsupported wire type {t}"),
            WireError::ZeroField => "field number zero".to_string(),
        }
    }
}

/// One field occurrence on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    /// A 4-byte value; no Kubernetes field has this type, so only its size matters.
    Fixed32,
    Bytes(&'a [u8]),
}

impl WireValue<'_> {
    /// The wire type number, for error messages.
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => VARINT,
            WireValue::Fixed64(_) => FIXED64,
            WireValue::Fixed32 => FIXED32,
            WireValue::Bytes(_) => LEN,
        }
    }
}

/// Reads fields one by one from a message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over one message's bytes.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether all bytes have been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads a base-128 varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let slice = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    /// Reads the next field: its number and value. `None` at the end.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let tag = u32::try_from(key >> 3).map_err(|_| WireError::Truncated)?;
        if tag == 0 {
            return Err(WireError::ZeroField);
        }
        let value = match wire_type {
            VARINT => WireValue::Varint(self.varint()?),
            FIXED64 => {
                let bytes = self.take(8)?;
                let mut array = [0u8; 8];
                array.copy_from_slice(bytes);
                WireValue::Fixed64(u64::from_le_bytes(array))
            }
            LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                WireValue::Bytes(self.take(len)?)
            }
            FIXED32 => {
                self.take(4)?;
                WireValue::Fixed32
            }
            other => return Err(WireError::BadWireType(other)),
        };
        Ok(Some((tag, value)))
    }
}

/// Appends protobuf fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// Appends a base-128 varint.
    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, tag: u32, wire_type: u8) {
        self.varint((u64::from(tag) << 3) | u64::from(wire_type));
    }

    /// Writes a varint field (int32 values are sign-extended, as protobuf requires).
    pub fn varint_field(&mut self, tag: u32, value: u64) {
        self.key(tag, VARINT);
        self.varint(value);
    }

    /// Writes a double field.
    pub fn double_field(&mut self, tag: u32, value: f64) {
        self.key(tag, FIXED64);
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    /// Writes a length-delimited field (string, bytes or an encoded message).
    pub fn bytes_field(&mut self, tag: u32, value: &[u8]) {
        self.key(tag, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }
}
