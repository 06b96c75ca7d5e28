//! A bounds-checked reader of Kafka's primitive types, in both encodings: classic (i16
//! string lengths, i32 array counts) and flexible (KIP-482: unsigned-varint lengths plus one,
//! tagged fields). Every read returns `None` past the end, so a malformed body just stops the
//! detail parse; array counts are checked against the bytes left, so no count read from the
//! wire sizes an allocation or a loop beyond the frame.

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Flexible encoding (compact strings/arrays, tagged fields).
    pub flex: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], flex: bool) -> Self {
        Self { buf, pos: 0, flex }
    }

    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn i8(&mut self) -> Option<i8> {
        self.fixed::<1>().map(i8::from_be_bytes)
    }

    pub fn i16(&mut self) -> Option<i16> {
        self.fixed::<2>().map(i16::from_be_bytes)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.fixed::<4>().map(i32::from_be_bytes)
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.fixed::<8>().map(i64::from_be_bytes)
    }

    pub fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.fixed::<1>()?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length in either encoding: `None` inside is null (-1 classic, 0 compact).
    fn len(&mut self, wide: bool) -> Option<Option<usize>> {
        let n: i64 = if self.flex {
            i64::try_from(self.uvarint()?).ok()? - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match n {
            -1 => Some(None),
            n if n < 0 => None,
            n => usize::try_from(n)
                .ok()
                .filter(|n| *n <= self.left())
                .map(Some),
        }
    }

    pub fn nullable_string(&mut self) -> Option<Option<String>> {
        let Some(n) = self.len(false)? else {
            return Some(None);
        };
        Some(Some(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }

    /// A string; null reads as empty.
    pub fn string(&mut self) -> Option<String> {
        self.nullable_string().map(Option::unwrap_or_default)
    }

    /// Bytes (or records); null reads as empty.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        match self.len(true)? {
            Some(n) => self.take(n),
            None => Some(&[]),
        }
    }

    /// An array count (null reads as 0); each element takes at least one byte, so a count
    /// larger than what is left is malformed.
    pub fn array(&mut self) -> Option<usize> {
        Some(self.len(true)?.unwrap_or(0))
    }

    /// Skips an array of fixed-size elements.
    pub fn skip_array(&mut self, elem: usize) -> Option<()> {
        let n = self.array()?;
        self.take(n.checked_mul(elem)?).map(drop)
    }

    pub fn uuid(&mut self) -> Option<[u8; 16]> {
        self.fixed::<16>()
    }

    /// Tagged fields (flexible versions only): skipped.
    pub fn tags(&mut self) -> Option<()> {
        if !self.flex {
            return Some(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.take(size)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings() {
        let mut r = Reader::new(b"\x00\x03abc\xff\xff\x00\x00\x00\x02", false);
        assert_eq!(r.string().as_deref(), Some("abc"));
        assert_eq!(r.nullable_string(), Some(None));
        assert_eq!(r.array(), None, "count 2 with no bytes left");
        let mut r = Reader::new(b"\x04abc\x00\x02\x01\x01\x02\xaa\xbb\xff\x01", true);
        assert_eq!(r.string().as_deref(), Some("abc"));
        assert_eq!(r.nullable_string(), Some(None));
        assert_eq!(r.array(), Some(1));
        assert_eq!(r.tags(), Some(()));
        assert_eq!(r.i8(), Some(-1));
        assert_eq!(r.tags(), None, "1 tag, no bytes");
        let mut r = Reader::new(&[0xff; 12], true);
        assert_eq!(r.uvarint(), None);
    }
}
