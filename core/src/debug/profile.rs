//! pprof's profile format (`profile.proto` of github.com/google/pprof), written by hand: the
//! handful of messages a profile needs are simple enough that a protobuf code generator (and
//! `protoc` at build time) would cost more than they save. Output is gzipped, as Go's
//! `runtime/pprof` writes it and as `go tool pprof` expects.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;

/// One source position of a stack: a function and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The (demangled) function name.
    pub function: String,
    /// Its source file, "" when unknown.
    pub file: String,
    /// The line, 0 when unknown.
    pub line: i64,
}

impl Frame {
    /// A frame that is only a name (no source position).
    pub fn named(function: impl Into<String>) -> Frame {
        Frame { function: function.into(), file: String::new(), line: 0 }
    }
}

/// Builds one profile: sample types, then samples (a stack, leaf first, where each element is
/// the chain of frames inlined at one address, innermost first), then [`ProfileBuilder::finish`].
#[derive(Debug)]
pub struct ProfileBuilder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<Vec<(u64, i64)>, u64>,
    sample_types: Vec<(i64, i64)>,
    period_type: (i64, i64),
    period: i64,
    comments: Vec<i64>,
    time_nanos: i64,
    duration_nanos: i64,
    /// Encoded `Sample`, `Location` and `Function` messages, each already framed as a field of
    /// `Profile`, in the order they were made.
    samples: Vec<u8>,
    location_msgs: Vec<u8>,
    function_msgs: Vec<u8>,
}

impl ProfileBuilder {
    /// A profile whose samples carry one value per `sample_types` entry (`(type, unit)`, e.g.
    /// `("cpu", "nanoseconds")`), taken every `period` `period_type` units.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> ProfileBuilder {
        let mut b = ProfileBuilder {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            sample_types: Vec::new(),
            period_type: (0, 0),
            period,
            comments: Vec::new(),
            time_nanos: 0,
            duration_nanos: 0,
            samples: Vec::new(),
            location_msgs: Vec::new(),
            function_msgs: Vec::new(),
        };
        // The string table starts with "" (index 0 means "unset" everywhere).
        b.string("");
        b.sample_types = sample_types.iter().map(|(t, u)| (b.string(t), b.string(u))).collect();
        b.period_type = (b.string(period_type.0), b.string(period_type.1));
        b
    }

    /// When the profile began and how long it covers.
    pub fn timing(&mut self, start: SystemTime, duration: Duration) {
        self.time_nanos = start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        self.duration_nanos = duration.as_nanos() as i64;
    }

    /// A free-text comment `go tool pprof -comments` shows.
    pub fn comment(&mut self, text: &str) {
        let id = self.string(text);
        self.comments.push(id);
    }

    /// Adds one sample: `stack` leaf first, `values` one per sample type, and string labels.
    pub fn sample(&mut self, stack: &[Vec<Frame>], values: &[i64], labels: &[(&str, &str)]) {
        let location_ids: Vec<u64> = stack.iter().map(|inlined| self.location(inlined)).collect();
        let mut msg = Vec::new();
        packed_varints(&mut msg, 1, location_ids.iter().copied());
        packed_varints(&mut msg, 2, values.iter().map(|v| *v as u64));
        for (k, v) in labels {
            let mut label = Vec::new();
            int_field(&mut label, 1, self.string(k));
            int_field(&mut label, 2, self.string(v));
            bytes_field(&mut msg, 3, &label);
        }
        bytes_field(&mut self.samples, 2, &msg);
    }

    /// The profile, gzipped.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, u) in &self.sample_types {
            bytes_field(&mut out, 1, &value_type(*t, *u));
        }
        out.extend_from_slice(&self.samples);
        out.extend_from_slice(&self.location_msgs);
        out.extend_from_slice(&self.function_msgs);
        for s in &self.strings {
            bytes_field(&mut out, 6, s.as_bytes());
        }
        int_field(&mut out, 9, self.time_nanos);
        int_field(&mut out, 10, self.duration_nanos);
        bytes_field(&mut out, 11, &value_type(self.period_type.0, self.period_type.1));
        int_field(&mut out, 12, self.period);
        for c in &self.comments {
            int_field(&mut out, 13, *c);
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&out);
        gz.finish().unwrap_or_default()
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(id) = self.string_ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn function(&mut self, f: &Frame) -> u64 {
        let key = (self.string(&f.function), self.string(&f.file));
        if let Some(id) = self.functions.get(&key) {
            return *id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.insert(key, id);
        let mut msg = Vec::new();
        uint_field(&mut msg, 1, id);
        int_field(&mut msg, 2, key.0);
        int_field(&mut msg, 3, key.0);
        int_field(&mut msg, 4, key.1);
        bytes_field(&mut self.function_msgs, 5, &msg);
        id
    }

    fn location(&mut self, inlined: &[Frame]) -> u64 {
        let lines: Vec<(u64, i64)> = inlined.iter().map(|f| (self.function(f), f.line)).collect();
        if let Some(id) = self.locations.get(&lines) {
            return *id;
        }
        let id = self.locations.len() as u64 + 1;
        let mut msg = Vec::new();
        uint_field(&mut msg, 1, id);
        for (function, line) in &lines {
            let mut l = Vec::new();
            uint_field(&mut l, 1, *function);
            int_field(&mut l, 2, *line);
            bytes_field(&mut msg, 4, &l);
        }
        bytes_field(&mut self.location_msgs, 4, &msg);
        self.locations.insert(lines, id);
        id
    }
}

/// Sets `drop_frames` on a finished (gzipped) profile: `go tool pprof` then hides the frames
/// whose function names fully match `regex`, and every frame they call — how Go's own heap
/// profiles hide the allocator. Returns `None` when `gz` is not a readable profile.
pub fn with_drop_frames(gz: &[u8], regex: &str) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).ok()?;
    // New strings go at the end of the string table, so their index is its current length.
    let strings = fields(&raw)?.iter().filter(|(f, _)| *f == 6).count();
    bytes_field(&mut raw, 6, regex.as_bytes());
    int_field(&mut raw, 7, strings as i64);
    let mut out = GzEncoder::new(Vec::new(), Compression::default());
    out.write_all(&raw).ok()?;
    out.finish().ok()
}

/// One field of a message: its number, with its bytes when it is length-delimited.
type Field<'a> = (u32, Option<&'a [u8]>);

/// A message's top-level fields in order (`None` if the message is malformed).
fn fields(b: &[u8]) -> Option<Vec<Field<'_>>> {
    let (mut i, mut out) = (0usize, Vec::new());
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let mut bytes = None;
        match key & 7 {
            0 => {
                read_varint(b, &mut i)?;
            }
            1 => i = i.checked_add(8)?,
            2 => {
                let len = usize::try_from(read_varint(b, &mut i)?).ok()?;
                bytes = Some(b.get(i..i.checked_add(len)?)?);
                i += len;
            }
            5 => i = i.checked_add(4)?,
            _ => return None,
        }
        if i > b.len() {
            return None;
        }
        out.push(((key >> 3) as u32, bytes));
    }
    Some(out)
}

/// The varint at `b[*i..]`, moving `i` past it.
fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

fn value_type(t: i64, u: i64) -> Vec<u8> {
    let mut m = Vec::new();
    int_field(&mut m, 1, t);
    int_field(&mut m, 2, u);
    m
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    // Zero is the default: proto3 leaves it out.
    if v != 0 {
        varint(out, u64::from(field) << 3);
        varint(out, v);
    }
}

fn int_field(out: &mut Vec<u8>, field: u32, v: i64) {
    uint_field(out, field, v as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn packed_varints(out: &mut Vec<u8>, field: u32, values: impl Iterator<Item = u64>) {
    let mut body = Vec::new();
    for v in values {
        varint(&mut body, v);
    }
    if !body.is_empty() {
        bytes_field(out, field, &body);
    }
}

#[cfg(test)]
pub(crate) mod decode {
    //! Just enough of a protobuf reader to check what the builder wrote.

    use std::io::Read as _;

    /// A profile's string table, and its samples as (location IDs, values).
    pub(crate) type Decoded = (Vec<String>, Vec<(Vec<u64>, Vec<u64>)>);

    /// The fields of one message, in order (see [`super::fields`]).
    pub(crate) fn fields(b: &[u8]) -> Vec<super::Field<'_>> {
        super::fields(b).expect("a well-formed message")
    }

    /// Packed varints.
    pub(crate) fn packed(b: &[u8]) -> Vec<u64> {
        let (mut i, mut out) = (0, Vec::new());
        while i < b.len() {
            out.push(super::read_varint(b, &mut i).expect("a varint"));
        }
        out
    }

    /// A gzipped profile: its string table and its samples (location IDs, values).
    pub(crate) fn profile(gz: &[u8]) -> Decoded {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).expect("gzip");
        let mut strings = Vec::new();
        let mut samples = Vec::new();
        for (field, v) in fields(&raw) {
            match (field, v) {
                (6, Some(s)) => strings.push(String::from_utf8(s.to_vec()).expect("utf8")),
                (2, Some(s)) => {
                    let (mut locs, mut vals) = (Vec::new(), Vec::new());
                    for (f, v) in fields(s) {
                        match (f, v) {
                            (1, Some(p)) => locs = packed(p),
                            (2, Some(p)) => vals = packed(p),
                            _ => {}
                        }
                    }
                    samples.push((locs, vals));
                }
                _ => {}
            }
        }
        (strings, samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_share_functions_and_locations_and_strings_start_empty() {
        let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 10);
        let main = vec![Frame { function: "main".into(), file: "main.rs".into(), line: 3 }];
        let work = vec![Frame::named("inner"), Frame { function: "work".into(), file: "w.rs".into(), line: 9 }];
        b.sample(&[work.clone(), main.clone()], &[2, 20], &[("thread", "t1")]);
        b.sample(std::slice::from_ref(&main), &[1, 10], &[]);
        b.comment("hello");
        let gz = b.finish();
        let (strings, samples) = decode::profile(&gz);
        assert_eq!(strings[0], "");
        for s in ["samples", "count", "cpu", "nanoseconds", "main", "main.rs", "inner", "work", "w.rs", "thread", "t1"]
        {
            assert_eq!(strings.iter().filter(|x| *x == s).count(), 1, "{s} once in {strings:?}");
        }
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0], (vec![1, 2], vec![2, 20]));
        // `main` is the same location both times.
        assert_eq!(samples[1], (vec![2], vec![1, 10]));
    }

    #[test]
    fn drop_frames_is_added_with_its_string() {
        let mut b = ProfileBuilder::new(&[("space", "bytes")], ("space", "bytes"), 1);
        b.sample(&[vec![Frame::named("__rust_alloc")], vec![Frame::named("main")]], &[64], &[]);
        let gz = with_drop_frames(&b.finish(), "__rust_alloc").expect("profile");
        let (strings, samples) = decode::profile(&gz);
        assert_eq!(samples.len(), 1);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).expect("gunzip");
        let drop = decode::fields(&raw).into_iter().filter(|(f, _)| *f == 7).count();
        assert_eq!(drop, 1);
        assert_eq!(strings.last().map(String::as_str), Some("__rust_alloc"));
        assert_eq!(strings.iter().filter(|s| *s == "__rust_alloc").count(), 2, "the frame's and the regex's");
        assert!(with_drop_frames(b"not gzip", "x").is_none());
    }

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(decode::packed(&out), [300]);
    }
}
