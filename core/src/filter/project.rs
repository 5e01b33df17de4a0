//! Projection: the part of an item a filter reads, built as JSON without the rest.
//!
//! Why: a filter is evaluated against an item's JSON, but an endpoint that writes its answer
//! straight from typed views (the health query) would otherwise have to build each item's whole
//! `Value` just to test it — most of the query's cost, for a filter that reads two fields.
//! [`project`] serializes a view into a `Value` holding only the fields on the filter's paths
//! ([`Projection`], from [`super::Filter::projection`]); evaluation over it gives the same answer
//! as over the whole item, because every field a selector walks through is kept whole from the
//! point the path stops naming fields.

use std::collections::BTreeMap;

use serde::ser::{self, Serialize};
use serde_json::{Map, Value};

use super::eval::{Expr, Step};

/// Which fields of an item to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// The whole value.
    All,
    /// Only these fields of an object (each with its own projection). A list passes its
    /// projection on to its elements; a scalar is kept as it is.
    Fields(BTreeMap<String, Projection>),
}

impl Projection {
    /// Nothing (the projection of a filter that reads no field).
    fn empty() -> Self {
        Projection::Fields(BTreeMap::new())
    }

    /// Widens `self` to keep the path `steps` too.
    fn add(&mut self, steps: &[Step]) {
        let Projection::Fields(fields) = self else { return };
        match steps.split_first() {
            // The selector ends here: the comparison reads the whole value.
            None => *self = Projection::All,
            Some((Step::Field(name), rest)) => {
                fields.entry(name.clone()).or_insert_with(Projection::empty).add(rest);
            }
            // Map keys are data, not fields: keep the map.
            Some((Step::MapKey(_), _)) => *self = Projection::All,
            // Into each element of a list: the elements get the rest of the path.
            Some((Step::Each, rest)) => self.add(rest),
        }
    }

    /// The projection covering every selector of `expr`.
    pub(super) fn of(expr: &Expr) -> Self {
        let mut p = Projection::empty();
        let mut stack = vec![expr];
        while let Some(e) = stack.pop() {
            match e {
                Expr::All(terms) | Expr::Any(terms) => stack.extend(terms),
                Expr::Not(inner) => stack.push(inner),
                Expr::Match(m) => p.add(&m.steps),
            }
        }
        p
    }
}

/// `item` as JSON, keeping only what `projection` names.
pub fn project<T: Serialize + ?Sized>(item: &T, projection: &Projection) -> serde_json::Result<Value> {
    match projection {
        Projection::All => serde_json::to_value(item),
        Projection::Fields(fields) => item.serialize(Projector(fields)),
    }
}

/// A serializer into `Value` that keeps only the named fields of objects.
struct Projector<'p>(&'p BTreeMap<String, Projection>);

/// Scalars are kept as they are: delegated to `serde_json`'s own serializer into `Value`.
macro_rules! scalar {
    ($($method:ident($t:ty)),* $(,)?) => {
        $(fn $method(self, v: $t) -> serde_json::Result<Value> {
            serde_json::value::Serializer.$method(v)
        })*
    };
}

impl<'p> ser::Serializer for Projector<'p> {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = ProjectSeq<'p>;
    type SerializeTuple = ProjectSeq<'p>;
    type SerializeTupleStruct = ProjectSeq<'p>;
    type SerializeTupleVariant = <serde_json::value::Serializer as ser::Serializer>::SerializeTupleVariant;
    type SerializeMap = ProjectMap<'p>;
    type SerializeStruct = ProjectMap<'p>;
    type SerializeStructVariant = <serde_json::value::Serializer as ser::Serializer>::SerializeStructVariant;

    scalar!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_none(self) -> serde_json::Result<Value> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> serde_json::Result<Value> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> serde_json::Result<Value> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _: &'static str) -> serde_json::Result<Value> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(self, n: &'static str, i: u32, v: &'static str) -> serde_json::Result<Value> {
        serde_json::value::Serializer.serialize_unit_variant(n, i, v)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> serde_json::Result<Value> {
        v.serialize(self)
    }

    // Variants carrying data are not part of any projected view's shape; kept whole.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        n: &'static str,
        i: u32,
        variant: &'static str,
        v: &T,
    ) -> serde_json::Result<Value> {
        serde_json::value::Serializer.serialize_newtype_variant(n, i, variant, v)
    }

    fn serialize_seq(self, len: Option<usize>) -> serde_json::Result<ProjectSeq<'p>> {
        Ok(ProjectSeq { fields: self.0, items: Vec::with_capacity(len.unwrap_or(0)) })
    }

    fn serialize_tuple(self, len: usize) -> serde_json::Result<ProjectSeq<'p>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> serde_json::Result<ProjectSeq<'p>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        n: &'static str,
        i: u32,
        v: &'static str,
        len: usize,
    ) -> serde_json::Result<Self::SerializeTupleVariant> {
        serde_json::value::Serializer.serialize_tuple_variant(n, i, v, len)
    }

    fn serialize_map(self, _: Option<usize>) -> serde_json::Result<ProjectMap<'p>> {
        Ok(ProjectMap { fields: self.0, out: Map::new(), key: None })
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> serde_json::Result<ProjectMap<'p>> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        n: &'static str,
        i: u32,
        v: &'static str,
        len: usize,
    ) -> serde_json::Result<Self::SerializeStructVariant> {
        serde_json::value::Serializer.serialize_struct_variant(n, i, v, len)
    }
}

/// A list: each element projected the same way.
struct ProjectSeq<'p> {
    fields: &'p BTreeMap<String, Projection>,
    items: Vec<Value>,
}

impl ProjectSeq<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> serde_json::Result<()> {
        self.items.push(v.serialize(Projector(self.fields))?);
        Ok(())
    }
}

/// The three list-like shapes collect the same way.
macro_rules! project_seq {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for ProjectSeq<'_> {
            type Ok = Value;
            type Error = serde_json::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> serde_json::Result<()> {
                self.push(v)
            }
            fn end(self) -> serde_json::Result<Value> {
                Ok(Value::Array(self.items))
            }
        })*
    };
}

project_seq!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field);

/// An object: only the named fields, each projected further.
struct ProjectMap<'p> {
    fields: &'p BTreeMap<String, Projection>,
    out: Map<String, Value>,
    /// The key of a map entry whose value comes next, when that entry is kept.
    key: Option<(String, &'p Projection)>,
}

impl<'p> ProjectMap<'p> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> serde_json::Result<()> {
        if let Some(p) = self.fields.get(key) {
            self.out.insert(key.to_string(), project(v, p)?);
        }
        Ok(())
    }
}

impl ser::SerializeMap for ProjectMap<'_> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> serde_json::Result<()> {
        self.key = match serde_json::to_value(key)? {
            Value::String(k) => self.fields.get_key_value(&k).map(|(k, p)| (k.clone(), p)),
            _ => None,
        };
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> serde_json::Result<()> {
        if let Some((k, p)) = self.key.take() {
            self.out.insert(k, project(v, p)?);
        }
        Ok(())
    }
    fn end(self) -> serde_json::Result<Value> {
        Ok(Value::Object(self.out))
    }
}

impl ser::SerializeStruct for ProjectMap<'_> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> serde_json::Result<()> {
        self.field(key, v)
    }
    fn end(self) -> serde_json::Result<Value> {
        Ok(Value::Object(self.out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::{schema, Filter};

    fn projection(expr: &str) -> Projection {
        Filter::compile(expr, &schema::SERVICE_ENTRY).expect("compiles").projection()
    }

    #[test]
    fn keeps_just_the_paths_a_filter_reads() {
        let p = projection(r#"Service.Tags contains "a" and Checks.Status == passing"#);
        let item = json!({
            "Node": {"Node": "n1", "Meta": {"k": "v"}},
            "Service": {"Service": "web", "Tags": ["a"], "Weights": {"Passing": 1}},
            "Checks": [{"Status": "passing", "Output": "big"}, {"Status": "critical", "Output": "x"}],
        });
        assert_eq!(
            project(&item, &p).expect("project"),
            json!({"Service": {"Tags": ["a"]}, "Checks": [{"Status": "passing"}, {"Status": "critical"}]})
        );
        // A map key keeps the whole map; a comparison on an object keeps the whole object.
        let p = projection(r#"Node.Meta.rack == "r1" and Service.Weights.Passing == 1"#);
        assert_eq!(
            project(&item, &p).expect("project"),
            json!({"Node": {"Meta": {"k": "v"}}, "Service": {"Weights": {"Passing": 1}}})
        );
        let p = projection("Service.Meta is empty");
        assert_eq!(project(&item, &p).expect("project"), json!({"Service": {}}), "absent fields stay absent");
    }
}
