//! Go's `hashstructure.Hash(v, nil)` (github.com/mitchellh/hashstructure at
//! `v0.0.0-20170609045927-2bca23e0e452`, the version Consul 1.16 imports as the un-suffixed v1
//! path; `/v2` is a different algorithm) over a small model of Go values, so hashes Consul
//! hands to clients (`ContentHash`) can be reproduced bit for bit.
//!
//! The algorithm, as that version walks a value with default options:
//! - the hasher is FNV-1 64 (`fnv.New64`, not FNV-1a), reset before every leaf;
//! - `int`/`uint` widen to 64 bits, `bool` becomes one byte (0 or 1), numbers hash their
//!   little-endian bytes, strings their UTF-8 bytes;
//! - a nil pointer or nil interface hashes as the `int` zero (eight zero bytes), whatever the
//!   pointed-to type;
//! - a slice folds its elements in order, `h = H(h, e)` from 0 (a `hash:"set"` field XORs them
//!   instead), so nil and empty slices both hash to 0;
//! - a map XORs `H(key, value)` over its entries (order-free), 0 when empty or nil;
//! - a struct starts from the hash of its type name and XORs `H(field name, field value)` over
//!   its exported fields, skipping `hash:"ignore"` / `hash:"-"` ones;
//!
//! where `H(a, b)` is the FNV-1 64 of `a` then `b` as little-endian `u64`s.
//!
//! [`Schema`] describes a Go type so a JSON document (as `encoding/json` would write that type)
//! can be turned into the Go value it came from, zero values included for fields the JSON
//! omitted (`omitempty` changes the JSON, never the hash), and so a JSON document we are given
//! can have its keys spelled as the Go fields they decode into.

use serde_json::Value;

/// A Go value as `hashstructure` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    /// A struct: its type's bare name (`reflect.Type.Name()`) and its exported fields in
    /// declaration order.
    Struct {
        /// The type name without package, e.g. `AgentService`.
        name: &'static str,
        /// The fields, with their `hash` tags.
        fields: Vec<GoField>,
    },
    /// `string` or a named string type.
    String(String),
    /// `int`, `int64` and the narrower signed ints once widened (hashstructure widens only
    /// `int`; Consul's types here use `int` throughout).
    Int(i64),
    /// `uint64` / `uint`.
    Uint(u64),
    /// `float64` (what `encoding/json` decodes every number in an `interface{}` to).
    Float(f64),
    /// `bool`.
    Bool(bool),
    /// A slice or array, in order.
    Slice(Vec<GoValue>),
    /// A map's entries (any order: the hash is order-free).
    Map(Vec<(GoValue, GoValue)>),
    /// A nil pointer or nil interface.
    Nil,
}

/// One exported struct field.
#[derive(Debug, Clone, PartialEq)]
pub struct GoField {
    /// The Go field name (not its JSON name; hashstructure hashes the former).
    pub name: &'static str,
    /// Its `hash:"..."` tag.
    pub tag: HashTag,
    /// Its value.
    pub value: GoValue,
}

/// The `hash` struct tag values hashstructure understands (`string` is not modelled: none of
/// the types we hash use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashTag {
    /// No tag: hashed normally.
    None,
    /// `hash:"ignore"` or `hash:"-"`: left out.
    Ignore,
    /// `hash:"set"`: a slice whose order does not matter.
    Set,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1 (multiply, then XOR) 64-bit, as Go's `hash/fnv.New64`.
fn fnv1_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| h.wrapping_mul(FNV_PRIME) ^ u64::from(*b))
}

/// hashstructure's `hashUpdateOrdered`: the hash of `a` then `b`, little-endian.
fn ordered(a: u64, b: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    fnv1_64(&buf)
}

impl GoValue {
    /// `hashstructure.Hash(v, nil)`.
    pub fn hash(&self) -> u64 {
        self.visit(HashTag::None)
    }

    fn visit(&self, tag: HashTag) -> u64 {
        match self {
            GoValue::Nil => fnv1_64(&0i64.to_le_bytes()),
            GoValue::Int(i) => fnv1_64(&i.to_le_bytes()),
            GoValue::Uint(u) => fnv1_64(&u.to_le_bytes()),
            GoValue::Float(f) => fnv1_64(&f.to_bits().to_le_bytes()),
            GoValue::Bool(b) => fnv1_64(&[u8::from(*b)]),
            GoValue::String(s) => fnv1_64(s.as_bytes()),
            GoValue::Slice(items) => items.iter().fold(0, |h, item| {
                let current = item.visit(HashTag::None);
                if tag == HashTag::Set {
                    h ^ current
                } else {
                    ordered(h, current)
                }
            }),
            GoValue::Map(entries) => {
                entries.iter().fold(0, |h, (k, v)| h ^ ordered(k.visit(HashTag::None), v.visit(HashTag::None)))
            }
            GoValue::Struct { name, fields } => fields
                .iter()
                .filter(|f| f.tag != HashTag::Ignore)
                .fold(fnv1_64(name.as_bytes()), |h, f| h ^ ordered(fnv1_64(f.name.as_bytes()), f.value.visit(f.tag))),
        }
    }

    /// The Go value `encoding/json` would produce decoding `v` into an `interface{}`: numbers
    /// are `float64`, objects `map[string]interface{}`, arrays `[]interface{}`, null nil.
    pub fn from_json_any(v: &Value) -> GoValue {
        match v {
            Value::Null => GoValue::Nil,
            Value::Bool(b) => GoValue::Bool(*b),
            Value::Number(n) => GoValue::Float(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => GoValue::String(s.clone()),
            Value::Array(items) => GoValue::Slice(items.iter().map(GoValue::from_json_any).collect()),
            Value::Object(m) => {
                GoValue::Map(m.iter().map(|(k, v)| (GoValue::String(k.clone()), GoValue::from_json_any(v))).collect())
            }
        }
    }
}

/// A Go type, enough to rebuild a value of it from its JSON.
#[derive(Debug)]
pub enum Schema {
    /// `string` (or a named string type).
    String,
    /// `int`.
    Int,
    /// `uint64`.
    Uint64,
    /// `bool`.
    Bool,
    /// `interface{}` holding whatever `encoding/json` decoded.
    Any,
    /// `*T`: nil when the JSON has null or nothing.
    Ptr(&'static Schema),
    /// `[]T`.
    Slice(&'static Schema),
    /// `map[string]T`.
    StringMap(&'static Schema),
    /// A struct type (by value).
    Struct(&'static StructSchema),
}

/// A struct type: its name and exported fields in declaration order.
#[derive(Debug)]
pub struct StructSchema {
    /// `reflect.Type.Name()`.
    pub name: &'static str,
    /// The exported fields.
    pub fields: &'static [FieldSchema],
}

/// An exported struct field. Its JSON name is its Go name (the structs we model rename none).
#[derive(Debug)]
pub struct FieldSchema {
    /// The Go (and JSON) field name.
    pub name: &'static str,
    /// Its type.
    pub ty: Schema,
    /// Its `hash` tag.
    pub tag: HashTag,
}

impl FieldSchema {
    /// A field without a `hash` tag.
    pub const fn new(name: &'static str, ty: Schema) -> Self {
        FieldSchema { name, ty, tag: HashTag::None }
    }

    /// A field with a `hash` tag.
    pub const fn tagged(name: &'static str, ty: Schema, tag: HashTag) -> Self {
        FieldSchema { name, ty, tag }
    }
}

impl Schema {
    /// The Go value of this type that `v` is the JSON of; a missing or null `v` (`None` or
    /// `Null`) gives the type's zero value. Values of the wrong JSON kind also read as zero:
    /// the JSON is our own output, so that only happens for fields we never write.
    pub fn from_json(&self, v: Option<&Value>) -> GoValue {
        let v = v.filter(|v| !v.is_null());
        match self {
            Schema::String => GoValue::String(v.and_then(Value::as_str).unwrap_or_default().to_string()),
            Schema::Int => GoValue::Int(v.and_then(json_int).unwrap_or(0)),
            Schema::Uint64 => GoValue::Uint(v.and_then(Value::as_u64).unwrap_or(0)),
            Schema::Bool => GoValue::Bool(v.and_then(Value::as_bool).unwrap_or(false)),
            Schema::Any => v.map_or(GoValue::Nil, GoValue::from_json_any),
            Schema::Ptr(inner) => v.map_or(GoValue::Nil, |v| inner.from_json(Some(v))),
            Schema::Slice(inner) => GoValue::Slice(
                v.and_then(Value::as_array)
                    .map(|a| a.iter().map(|e| inner.from_json(Some(e))).collect())
                    .unwrap_or_default(),
            ),
            Schema::StringMap(inner) => GoValue::Map(
                v.and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, e)| (GoValue::String(k.clone()), inner.from_json(Some(e)))).collect())
                    .unwrap_or_default(),
            ),
            Schema::Struct(s) => {
                let obj = v.and_then(Value::as_object);
                GoValue::Struct {
                    name: s.name,
                    fields: s
                        .fields
                        .iter()
                        .map(|f| GoField {
                            name: f.name,
                            tag: f.tag,
                            value: f.ty.from_json(obj.and_then(|o| o.get(f.name))),
                        })
                        .collect(),
                }
            }
        }
    }
}

impl StructSchema {
    /// Renames the keys of `v` (a JSON object of this type) to the Go field names they decode
    /// into, nested structs included: Go's `encoding/json` matches field names
    /// case-insensitively and Consul's registration decoder also takes snake_case
    /// (`destination_service_name`), so a key matching a field with case and underscores
    /// ignored is that field. Opaque maps (`Config`) and unknown keys are left as they are;
    /// when a field's exact name is present too, the other spellings are dropped.
    pub fn canonicalize_keys(&self, v: &mut Value) {
        let Value::Object(m) = v else { return };
        let squash = |k: &str| k.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
        for f in self.fields {
            let wanted = squash(f.name);
            let aliases: Vec<String> = m.keys().filter(|k| *k != f.name && squash(k) == wanted).cloned().collect();
            for alias in aliases {
                if let Some(value) = m.remove(&alias) {
                    m.entry(f.name).or_insert(value);
                }
            }
            if let Some(value) = m.get_mut(f.name) {
                f.ty.canonicalize_keys(value);
            }
        }
    }
}

impl Schema {
    /// [`StructSchema::canonicalize_keys`] for whatever structs a value of this type holds.
    pub fn canonicalize_keys(&self, v: &mut Value) {
        match self {
            Schema::Struct(s) => s.canonicalize_keys(v),
            Schema::Ptr(inner) => inner.canonicalize_keys(v),
            Schema::Slice(inner) => {
                if let Value::Array(items) = v {
                    items.iter_mut().for_each(|item| inner.canonicalize_keys(item));
                }
            }
            Schema::StringMap(inner) => {
                if let Value::Object(m) = v {
                    m.values_mut().for_each(|item| inner.canonicalize_keys(item));
                }
            }
            Schema::String | Schema::Int | Schema::Uint64 | Schema::Bool | Schema::Any => {}
        }
    }
}

/// A JSON number as a Go `int` (whole floats included, as `encoding/json` would reject
/// fractions anyway).
fn json_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)).or_else(|| v.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Go's `fnv.New64` of "" and "a" (FNV-1, published test values).
    #[test]
    fn fnv1_64_matches_go() {
        assert_eq!(fnv1_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1_64(b"a"), 0xaf63_bd4c_8601_b7be);
    }

    #[test]
    fn nil_hashes_as_int_zero_and_empty_collections_as_zero() {
        assert_eq!(GoValue::Nil.hash(), GoValue::Int(0).hash());
        assert_eq!(GoValue::Slice(vec![]).hash(), 0);
        assert_eq!(GoValue::Map(vec![]).hash(), 0);
    }

    #[test]
    fn maps_ignore_order_slices_do_not_unless_set() {
        let (a, b) = (GoValue::String("a".into()), GoValue::String("b".into()));
        let m1 = GoValue::Map(vec![(a.clone(), GoValue::Int(1)), (b.clone(), GoValue::Int(2))]);
        let m2 = GoValue::Map(vec![(b.clone(), GoValue::Int(2)), (a.clone(), GoValue::Int(1))]);
        assert_eq!(m1.hash(), m2.hash());
        let s1 = GoValue::Slice(vec![a.clone(), b.clone()]);
        let s2 = GoValue::Slice(vec![b, a]);
        assert_ne!(s1.hash(), s2.hash());
        assert_eq!(s1.visit(HashTag::Set), s2.visit(HashTag::Set));
    }

    #[test]
    fn keys_are_renamed_to_go_field_names_except_in_opaque_maps() {
        static INNER: StructSchema =
            StructSchema { name: "I", fields: &[FieldSchema::new("LocalBindPort", Schema::Int)] };
        static OUTER: StructSchema = StructSchema {
            name: "O",
            fields: &[
                FieldSchema::new("DestinationName", Schema::String),
                FieldSchema::new("Upstreams", Schema::Slice(&Schema::Struct(&INNER))),
                FieldSchema::new("Config", Schema::StringMap(&Schema::Any)),
            ],
        };
        let mut v = json!({
            "destination_name": "a", "upstreams": [{"local_bind_port": 1}, {"LOCALBINDPORT": 2}],
            "config": {"connect_timeout_ms": 1}, "other_key": true,
        });
        OUTER.canonicalize_keys(&mut v);
        assert_eq!(
            v,
            json!({
                "DestinationName": "a", "Upstreams": [{"LocalBindPort": 1}, {"LocalBindPort": 2}],
                "Config": {"connect_timeout_ms": 1}, "other_key": true,
            })
        );
        let mut both = json!({"DestinationName": "exact", "destination_name": "alias"});
        OUTER.canonicalize_keys(&mut both);
        assert_eq!(both, json!({"DestinationName": "exact"}));
    }

    #[test]
    fn ignored_fields_do_not_count_and_missing_json_is_zero() {
        static T: StructSchema = StructSchema {
            name: "T",
            fields: &[
                FieldSchema::new("A", Schema::Int),
                FieldSchema::tagged("B", Schema::String, HashTag::Ignore),
                FieldSchema::new("C", Schema::Ptr(&Schema::Bool)),
            ],
        };
        let schema = Schema::Struct(&T);
        let zero = schema.from_json(None);
        assert_eq!(zero.hash(), schema.from_json(Some(&json!({"A": 0, "B": "x"}))).hash());
        assert_eq!(zero.hash(), schema.from_json(Some(&json!({"B": "y", "C": null}))).hash());
        assert_ne!(zero.hash(), schema.from_json(Some(&json!({"C": false}))).hash());
    }
}
