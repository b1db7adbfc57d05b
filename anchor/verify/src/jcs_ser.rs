//! A serde `Serializer` that writes RFC 8785 canonical JSON directly, without building a
//! `serde_json::Value` first. Objects are written straight through while their keys arrive
//! in canonical order (the common case for our own structs, whose fields are declared
//! sorted) and are buffered and sorted otherwise.

use std::borrow::Cow;

use serde::ser::{self, Serialize};

use crate::Error;
use crate::jcs_text::{MAX_SAFE, utf16_cmp, write_f64, write_string};

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Malformed {
            what: "value",
            detail: msg.to_string(),
        }
    }
}

/// Writes the canonical form of `value` into `out`.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(Jcs { out })
}

pub(crate) struct Jcs<'a> {
    out: &'a mut Vec<u8>,
}

fn write_u64(u: u64, out: &mut Vec<u8>) -> Result<(), Error> {
    if u <= MAX_SAFE {
        out.extend_from_slice(u.to_string().as_bytes());
        return Ok(());
    }
    big_integer(u as f64, u.to_string(), out)
}

fn write_i64(i: i64, out: &mut Vec<u8>) -> Result<(), Error> {
    if i.unsigned_abs() <= MAX_SAFE {
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    big_integer(i as f64, i.to_string(), out)
}

/// An integer beyond 2^53 is accepted only when the nearest double prints back as the
/// same digits; otherwise canonicalising would silently change it.
fn big_integer(f: f64, digits: String, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut tmp = Vec::with_capacity(24);
    write_f64(f, &mut tmp)?;
    if tmp != digits.as_bytes() {
        return Err(Error::UnsafeInteger { value: digits });
    }
    out.extend_from_slice(&tmp);
    Ok(())
}

impl<'a> ser::Serializer for Jcs<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Obj<'a>;
    type SerializeStruct = Obj<'a>;
    type SerializeStructVariant = Obj<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        write_i64(v.into(), self.out)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        write_i64(v.into(), self.out)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        write_i64(v.into(), self.out)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write_i64(v, self.out)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        write_u64(v.into(), self.out)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        write_u64(v.into(), self.out)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        write_u64(v.into(), self.out)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write_u64(v, self.out)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        write_f64(v.into(), self.out)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        write_f64(v, self.out)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_string(v.encode_utf8(&mut [0u8; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(ser::Error::custom(
            "raw bytes have no canonical JSON form; encode them as a string",
        ))
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        v.serialize(Jcs { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Error> {
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            close: b"]",
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, Error> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.extend_from_slice(b":[");
        Ok(Seq {
            out: self.out,
            first: true,
            close: b"]}",
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Obj<'a>, Error> {
        Ok(Obj::new(self.out, b""))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Obj<'a>, Error> {
        Ok(Obj::new(self.out, b""))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Obj<'a>, Error> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        Ok(Obj::new(self.out, b"}"))
    }
}

pub(crate) struct Seq<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    close: &'static [u8],
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        v.serialize(Jcs { out: self.out })
    }
    fn close(self) -> Result<(), Error> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}
impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}
impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}
impl ser::SerializeTupleVariant for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// An object being written. While keys arrive in canonical order, members go straight to
/// `out` (after `start`); the first out-of-order key moves what was written into `members`
/// and the rest is buffered there, to be sorted and written at `end`.
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    pending_key: Option<String>,
    /// Buffered mode: (key, value bytes).
    members: Option<Vec<(Cow<'static, str>, Vec<u8>)>>,
    /// Streaming mode: (key, value start, value end) of members already in `out`.
    streamed: Vec<(Cow<'static, str>, usize, usize)>,
    close: &'static [u8],
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>, close: &'static [u8]) -> Self {
        out.push(b'{');
        let start = out.len();
        Obj {
            out,
            start,
            pending_key: None,
            members: None,
            streamed: Vec::new(),
            close,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        v: &T,
    ) -> Result<(), Error> {
        if self.members.is_none() {
            let in_order = self
                .streamed
                .last()
                .is_none_or(|(k, _, _)| utf16_cmp(k, &key).is_lt());
            if in_order {
                if !self.streamed.is_empty() {
                    self.out.push(b',');
                }
                write_string(&key, self.out);
                self.out.push(b':');
                let vstart = self.out.len();
                v.serialize(Jcs { out: self.out })?;
                let vend = self.out.len();
                self.streamed.push((key, vstart, vend));
                return Ok(());
            }
            // Switch to buffered mode: lift the streamed members out of `out`.
            let mut members = Vec::with_capacity(self.streamed.len() + 4);
            for (k, s, e) in self.streamed.drain(..) {
                members.push((k, self.out[s..e].to_vec()));
            }
            self.out.truncate(self.start);
            self.members = Some(members);
        }
        let mut buf = Vec::new();
        v.serialize(Jcs { out: &mut buf })?;
        if let Some(m) = self.members.as_mut() {
            m.push((key, buf));
        }
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        if let Some(mut members) = self.members {
            members.sort_by(|a, b| utf16_cmp(&a.0, &b.0));
            for w in members.windows(2) {
                if w[0].0 == w[1].0 {
                    return Err(Error::DuplicateKey {
                        key: w[0].0.to_string(),
                    });
                }
            }
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                write_string(k, self.out);
                self.out.push(b':');
                self.out.extend_from_slice(v);
            }
        }
        self.out.push(b'}');
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeMap for Obj<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.pending_key = Some(key.serialize(KeySer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value without a key"))?;
        self.member(Cow::Owned(key), v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
impl ser::SerializeStruct for Obj<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.member(Cow::Borrowed(key), v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
impl ser::SerializeStructVariant for Obj<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.member(Cow::Borrowed(key), v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Object keys must be strings (integers are written as their decimal string, as
/// serde_json does).
struct KeySer;

macro_rules! key_int {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<String, Error> { Ok(v.to_string()) }
    )*};
}

macro_rules! key_reject {
    ($($f:ident($($a:ty),*)),*) => {$(
        fn $f(self, $(_: $a),*) -> Result<String, Error> { Err(<Error as ser::Error>::custom("object keys must be strings")) }
    )*};
}

impl ser::Serializer for KeySer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Error> {
        v.serialize(self)
    }
    key_int!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
             serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
    key_reject!(
        serialize_bool(bool),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str)
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(<Error as ser::Error>::custom("object keys must be strings"))
    }
}
