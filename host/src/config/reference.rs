//! Every key of the configuration file, read from the config types themselves, so the
//! reference page (docs/config.md) can be checked against them and never drift.
//!
//! [`keys`] walks a type's `Deserialize` implementation with a deserializer that answers every
//! request with a placeholder and writes down what was asked for: each struct field (by its
//! YAML name, after serde's renames; `#[serde(skip)]` fields are not keys), descending into
//! nested structs, the elements of lists (`adapters[].name`) and the values of maps whose
//! values are structs (`tenants.<name>.priority`). A field whose value is not a struct (a
//! string, number, duration, list of strings, map of strings, free-form JSON) is one key, a
//! leaf. Each key comes with the Rust type of its field, for messages.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

/// One configuration key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The YAML path: `runner.capacity`, `adapters[].limits.memory`, `tenants.<name>.priority`.
    pub path: String,
    /// The Rust type of the field, without module paths (`Option<String>`, `ConfigDuration`).
    pub rust_type: String,
}

/// Why a type could not be walked (a `Deserialize` that refuses every placeholder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot list the config keys: {0}")]
pub struct WalkError(String);

impl de::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

/// The keys of the configuration file (`Config`), sorted by path.
pub fn config_keys() -> Result<Vec<Key>, WalkError> {
    keys::<super::Config>()
}

/// The keys of `T`, sorted by path.
pub fn keys<T: de::DeserializeOwned>() -> Result<Vec<Key>, WalkError> {
    let state = State::default();
    T::deserialize(Walker {
        state: &state,
        path: String::new(),
        rust_type: short_type_name(std::any::type_name::<T>()),
    })
    .map_err(|e| WalkError(format!("{} (at `{}`)", e.0, state.last_path.borrow())))?;
    let mut keys = state.keys.into_inner();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// `alloc::collections::btree::map::BTreeMap<alloc::string::String, u32>` → `BTreeMap<String, u32>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

#[derive(Default)]
struct State {
    keys: RefCell<Vec<Key>>,
    /// Structs being walked (a recursive type ends as a leaf).
    structs: RefCell<Vec<&'static str>>,
    last_path: RefCell<String>,
}

/// The placeholder deserializer at one path.
struct Walker<'s> {
    state: &'s State,
    path: String,
    rust_type: String,
}

impl<'s> Walker<'s> {
    fn leaf(&self) {
        self.state.keys.borrow_mut().push(Key {
            path: self.path.clone(),
            rust_type: self.rust_type.clone(),
        });
        *self.state.last_path.borrow_mut() = self.path.clone();
    }

    fn child(&self, suffix: &str, rust_type: String) -> Walker<'s> {
        let path = if self.path.is_empty() {
            suffix.to_owned()
        } else if suffix.starts_with('[') {
            format!("{}{suffix}", self.path)
        } else {
            format!("{}.{suffix}", self.path)
        };
        Walker {
            state: self.state,
            path,
            rust_type,
        }
    }

    /// Walks a container's one element at `suffix`: when the element is a struct its fields
    /// are keys; otherwise the container itself is the leaf.
    fn element<T>(
        &self,
        suffix: &str,
        walk: impl FnOnce(Walker<'s>) -> Result<T, WalkError>,
    ) -> Result<T, WalkError> {
        let before = self.state.keys.borrow().len();
        let child = self.child(suffix, String::new());
        let prefix = format!("{}.", child.path);
        let child_path = child.path.clone();
        let value = walk(child)?;
        let mut keys = self.state.keys.borrow_mut();
        let nested = keys[before..].iter().any(|k| k.path.starts_with(&prefix));
        if !nested {
            keys.retain(|k| k.path != child_path);
            keys.push(Key {
                path: self.path.clone(),
                rust_type: self.rust_type.clone(),
            });
        }
        Ok(value)
    }
}

macro_rules! leaf {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
            self.leaf();
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de, 's> Deserializer<'de> for Walker<'s> {
    type Error = WalkError;

    leaf! {
        deserialize_any => visit_u64(0),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str("x"),
        deserialize_string => visit_str("x"),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str("x"),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf();
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.element("[]", |child| {
            visitor.visit_seq(OneElement {
                walker: Some(child),
            })
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf();
        visitor.visit_seq(de::value::SeqDeserializer::<_, WalkError>::new(
            std::iter::empty::<u8>(),
        ))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.element("<name>", |child| {
            visitor.visit_map(OneEntry {
                walker: Some(child),
            })
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        if self.state.structs.borrow().contains(&name) {
            self.leaf();
            return Err(WalkError(format!(
                "`{}` is the recursive type {name}; the reference cannot list its keys",
                self.path
            )));
        }
        self.state.structs.borrow_mut().push(name);
        let result = visitor.visit_map(Fields {
            walker: &self,
            fields: fields.iter(),
            current: None,
        });
        self.state.structs.borrow_mut().pop();
        result
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf();
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(de::value::StrDeserializer::<WalkError>::new(first))
    }
}

/// The fields of a struct, each once.
struct Fields<'w, 's> {
    walker: &'w Walker<'s>,
    fields: std::slice::Iter<'static, &'static str>,
    current: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = Some(field);
        seed.deserialize(field.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let field = self.current.take().unwrap_or_default();
        let child = self
            .walker
            .child(field, short_type_name(std::any::type_name::<V::Value>()));
        seed.deserialize(child)
    }
}

/// A list of one element.
struct OneElement<'s> {
    walker: Option<Walker<'s>>,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        match self.walker.take() {
            None => Ok(None),
            Some(mut walker) => {
                walker.rust_type = short_type_name(std::any::type_name::<T::Value>());
                seed.deserialize(walker).map(Some)
            }
        }
    }
}

/// A map of one entry, keyed `<name>`.
struct OneEntry<'s> {
    walker: Option<Walker<'s>>,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        if self.walker.is_none() {
            return Ok(None);
        }
        seed.deserialize("name".into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let mut walker = self
            .walker
            .take()
            .ok_or_else(|| WalkError("map value without a key".to_owned()))?;
        walker.rust_type = short_type_name(std::any::type_name::<V::Value>());
        seed.deserialize(walker)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        max_items: u32,
        tags: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
        many: Vec<Inner>,
        by_name: BTreeMap<String, Inner>,
        labels: BTreeMap<String, String>,
        maybe: Option<Inner>,
        #[serde(skip)]
        hidden: u8,
    }

    #[test]
    fn nested_structs_lists_and_maps_become_paths() {
        let keys = keys::<Outer>().expect("walks");
        let paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "byName.<name>.maxItems",
                "byName.<name>.tags",
                "inner.maxItems",
                "inner.tags",
                "labels",
                "many[].maxItems",
                "many[].tags",
                "maybe.maxItems",
                "maybe.tags",
                "name",
            ]
        );
        let labels = keys.iter().find(|k| k.path == "labels").expect("labels");
        assert_eq!(labels.rust_type, "BTreeMap<String, String>");
        let tags = keys.iter().find(|k| k.path == "inner.tags").expect("tags");
        assert_eq!(tags.rust_type, "Vec<String>");
    }

    #[test]
    fn the_config_has_its_documented_keys() {
        let keys = config_keys().expect("the config walks");
        for path in [
            "namespace",
            "adapters[].limits.memory",
            "runner.capacity",
            "routing.byType",
        ] {
            assert!(keys.iter().any(|k| k.path == path), "{path} in {keys:?}");
        }
        assert!(
            !keys.iter().any(|k| k.path == "baseDir"),
            "skipped fields are no keys"
        );
    }
}
