//! Reading Consul request bodies: JSON objects whose field names match case-insensitively, as
//! Consul's decoder (mapstructure) does, with errors that name the field.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Error;

/// A JSON object with case-insensitive field access; `path` prefixes field names in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

/// Parses `bytes` as a JSON object.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::BadRequest("Request decode failed: expected a JSON object".into())),
        Err(e) => Err(Error::BadRequest(format!("Request decode failed: {e}"))),
    }
}

impl<'a> Obj<'a> {
    /// Wraps `map`; `path` is how errors name this object (`""` at the top).
    pub(crate) fn new(map: &'a Map<String, Value>, path: &'a str) -> Self {
        Obj { map, path }
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn bad(&self, field: &str, what: &str) -> Error {
        Error::BadRequest(format!("Request decode failed: {}: {what}", self.name(field)))
    }

    /// The value of `field` (any of `names`, compared ignoring case), unless null.
    pub(crate) fn get(&self, names: &[&str]) -> Option<&'a Value> {
        self.map
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// A string field ("" when absent).
    pub(crate) fn string(&self, names: &[&str]) -> Result<String, Error> {
        match self.get(names) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.bad(names[0], "expected a string")),
        }
    }

    /// A boolean field (false when absent).
    pub(crate) fn boolean(&self, names: &[&str]) -> Result<bool, Error> {
        match self.get(names) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(names[0], "expected true or false")),
        }
    }

    /// An integer field within `min..=max` (`None` when absent).
    pub(crate) fn int(&self, names: &[&str], min: i64, max: i64) -> Result<Option<i64>, Error> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(self.bad(names[0], &format!("{n} is outside {min}..={max}"))),
            },
            Some(_) => Err(self.bad(names[0], "expected a number")),
        }
    }

    /// A list of strings (empty when absent).
    pub(crate) fn strings(&self, names: &[&str]) -> Result<Vec<String>, Error> {
        match self.get(names) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.bad(names[0], "expected a list of strings")))
                .collect(),
            Some(_) => Err(self.bad(names[0], "expected a list of strings")),
        }
    }

    /// A string → string map (empty when absent).
    pub(crate) fn string_map(&self, names: &[&str]) -> Result<BTreeMap<String, String>, Error> {
        match self.get(names) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(self.bad(names[0], &format!("value of {k:?} must be a string"))),
                })
                .collect(),
            Some(_) => Err(self.bad(names[0], "expected an object of strings")),
        }
    }

    /// A nested object (`None` when absent).
    pub(crate) fn object(&self, names: &[&str]) -> Result<Option<&'a Map<String, Value>>, Error> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.bad(names[0], "expected an object")),
        }
    }

    /// A list of objects (empty when absent).
    pub(crate) fn objects(&self, names: &[&str]) -> Result<Vec<&'a Map<String, Value>>, Error> {
        match self.get(names) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_object().ok_or_else(|| self.bad(names[0], "expected a list of objects")))
                .collect(),
            Some(_) => Err(self.bad(names[0], "expected a list of objects")),
        }
    }
}

/// Checks node or service metadata against Consul's limits (`structs.ValidateMetadata`): at
/// most 64 pairs, keys of up to 128 characters from `[A-Za-z0-9_-]` not starting with the
/// reserved `consul-` prefix, values of up to 512 characters.
pub(crate) fn validate_meta(field: &str, meta: &BTreeMap<String, String>) -> Result<(), Error> {
    let bad = |m: String| Error::BadRequest(format!("{field}: {m}"));
    if meta.len() > 64 {
        return Err(bad(format!("{} pairs is more than the 64 allowed", meta.len())));
    }
    for (k, v) in meta {
        if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad(format!("invalid key {k:?}: 1–128 characters of A-Z a-z 0-9 _ -")));
        }
        if k.starts_with("consul-") {
            return Err(bad(format!("key {k:?} uses the reserved prefix \"consul-\"")));
        }
        if v.len() > 512 {
            return Err(bad(format!("value of {k:?} is longer than 512 characters")));
        }
    }
    Ok(())
}
