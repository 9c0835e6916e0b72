//! A partition key that can share the buffer it was read from.
//!
//! ```text
//!  aggregate (Bytes) ──deaggregate──▶ key table entry ──clone per user record──▶ PartitionKey
//!                                     (one view, validated UTF-8 once)          (refcount, no copy)
//! ```
//!
//! A deaggregated user record names its partition key through the aggregate's key table, and
//! many records share one entry. [`PartitionKey`] is a UTF-8 string that can be a view into
//! the aggregate's bytes, so handing a key to each of hundreds of user records costs a
//! reference count, not an allocation and a copy each.
//!
//! # Usage
//!
//! ```
//! use kinesis_agg::PartitionKey;
//!
//! let key = PartitionKey::from("user-42");
//! assert_eq!(key, "user-42");
//! assert_eq!(key.len(), 7); // derefs to `str`
//! let owned: String = key.into();
//! assert_eq!(owned, "user-42");
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// An immutable UTF-8 partition key, cheap to clone, possibly sharing a received buffer.
///
/// It dereferences to `str` and compares equal to `str`, `&str` and `String`; convert it
/// with `String::from(key)` when an owned `String` is needed.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(ByteString);

impl PartitionKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A view of `run` (a `str` slice of `of`) sharing `of`'s buffer.
    pub(crate) fn view(of: &ByteString, run: &str) -> Self {
        PartitionKey(of.slice_ref(run))
    }

    /// `bytes` as a key if they are UTF-8, sharing their buffer.
    pub(crate) fn from_utf8(bytes: Bytes) -> Option<Self> {
        Self::run(bytes).map(PartitionKey)
    }

    /// A view over many keys at once (a key table's run), if it is UTF-8.
    pub(crate) fn run(bytes: Bytes) -> Option<ByteString> {
        ByteString::try_from(bytes).ok()
    }
}

impl Deref for PartitionKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PartitionKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for PartitionKey {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<str> for PartitionKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for PartitionKey {
    fn from(s: String) -> Self {
        PartitionKey(ByteString::from(s))
    }
}

impl From<&str> for PartitionKey {
    fn from(s: &str) -> Self {
        PartitionKey(ByteString::from(s))
    }
}

impl From<&String> for PartitionKey {
    fn from(s: &String) -> Self {
        PartitionKey(ByteString::from(s.as_str()))
    }
}

impl From<PartitionKey> for String {
    fn from(k: PartitionKey) -> Self {
        String::from(k.0)
    }
}

impl PartialEq<str> for PartitionKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PartitionKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for PartitionKey {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<PartitionKey> for str {
    fn eq(&self, other: &PartitionKey) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<PartitionKey> for &str {
    fn eq(&self, other: &PartitionKey) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<PartitionKey> for String {
    fn eq(&self, other: &PartitionKey) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn views_share_the_buffer_and_compare_as_strings() {
        let buf = Bytes::from_static(b"\x0aalpha-beta");
        let run = PartitionKey::run(buf.slice(1..)).unwrap();
        let key = PartitionKey::view(&run, &run[6..]);
        assert_eq!(key, "beta");
        assert_eq!("beta", key);
        assert_eq!(key, String::from("beta"));
        assert_eq!(key.as_ptr(), buf[7..].as_ptr(), "no copy");
        assert_eq!(format!("{key} {key:?}"), "beta \"beta\"");
        let mut m = HashMap::new();
        m.insert(key.clone(), 1);
        assert_eq!(m.get("beta"), Some(&1), "Borrow<str> hashes like str");
        assert_eq!(String::from(key), "beta");
    }

    #[test]
    fn only_utf8_becomes_a_key() {
        assert!(PartitionKey::from_utf8(Bytes::from_static(b"\xff")).is_none());
        assert!(PartitionKey::run(Bytes::from_static(b"ok\xc3")).is_none());
        assert_eq!(
            PartitionKey::from_utf8(Bytes::from_static("€".as_bytes())).unwrap(),
            "€"
        );
    }
}
