//! RFC 4251 wire types: a bounds-checked reader and a writer.

use crate::Error;

/// A reader over a byte slice. Every length is checked against what remains before use, so a
/// hostile length can never cause an allocation or a panic.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Take `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.rest.len() {
            return Err(Error::Truncated {
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A `byte`.
    pub fn u8(&mut self) -> Result<u8, Error> {
        let b = self.bytes(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    /// A `uint32`.
    pub fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    /// A `uint64`.
    pub fn u64(&mut self) -> Result<u64, Error> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `boolean` (0 or 1; anything else is refused as OpenSSH does).
    pub fn bool(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Bool),
        }
    }

    /// A `string` as bytes.
    pub fn string(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.bytes(len)
    }

    /// A `string` that must be UTF-8; `what` names the field in the error.
    pub fn utf8(&mut self, what: &'static str) -> Result<&'a str, Error> {
        std::str::from_utf8(self.string()?).map_err(|_| Error::Utf8(what))
    }

    /// Fail unless everything was read.
    pub fn finish(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.rest.len()))
        }
    }
}

/// A writer of RFC 4251 types into a growable buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `byte`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A `uint32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A `boolean`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// A `string`. Lengths over `u32::MAX` cannot occur for frames under the cap; they are
    /// saturated rather than panicking.
    pub fn string(&mut self, v: impl AsRef<[u8]>) -> &mut Self {
        let v = v.as_ref();
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }

    /// Raw bytes, no length prefix.
    pub fn raw(&mut self, v: impl AsRef<[u8]>) -> &mut Self {
        self.buf.extend_from_slice(v.as_ref());
        self
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}
