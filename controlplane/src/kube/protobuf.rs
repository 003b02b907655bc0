//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send (`kubectl create configmap|secret|namespace`): the
//! `k8s\0` envelope around a `runtime.Unknown`, whose `raw` bytes are decoded into the JSON
//! object by a field table per kind (ConfigMap, Secret, Namespace and their ObjectMeta).
//!
//! Guarantees: a body that is not a well-formed envelope, or of a kind without a table here,
//! is refused (`400` / `415`); unknown fields are skipped, as protobuf readers do; answers
//! stay JSON, which these clients also accept.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::status::ApiError;

/// How one field is turned into JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    StrMap,
    BytesMap,
    RepeatedStr,
    Time,
    Message(&'static [Field]),
    RepeatedMessage(&'static [Field]),
}

type Field = (u64, &'static str, Kind);

const OWNER_REFERENCE: &[Field] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Time),
    (11, "labels", Kind::StrMap),
    (12, "annotations", Kind::StrMap),
    (
        13,
        "ownerReferences",
        Kind::RepeatedMessage(OWNER_REFERENCE),
    ),
    (14, "finalizers", Kind::RepeatedStr),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::StrMap),
    (3, "binaryData", Kind::BytesMap),
    (4, "immutable", Kind::Bool),
];

const SECRET: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::BytesMap),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::StrMap),
    (5, "immutable", Kind::Bool),
];

const NAMESPACE: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (
        2,
        "spec",
        Kind::Message(&[(1, "finalizers", Kind::RepeatedStr)]),
    ),
    (3, "status", Kind::Message(&[(1, "phase", Kind::Str)])),
];

const TYPE_META: &[Field] = &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)];

const UNKNOWN: &[Field] = &[
    (1, "typeMeta", Kind::Message(TYPE_META)),
    (2, "raw", Kind::Bytes),
];

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf request body is malformed")
}

/// One field as read: number, wire type, varint value (wire type 0), bytes (the others).
type RawField<'a> = (u64, u64, u64, &'a [u8]);

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or_else(malformed)?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    }

    fn take(&mut self, length: u64) -> Result<&'a [u8], ApiError> {
        let length = usize::try_from(length).map_err(|_| malformed())?;
        if length > self.bytes.len() {
            return Err(malformed());
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    /// The next field: number, wire type, and its varint value or its bytes.
    fn field(&mut self) -> Result<Option<RawField<'a>>, ApiError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (number, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => Ok(Some((number, wire, self.varint()?, &[]))),
            1 => Ok(Some((number, wire, 0, self.take(8)?))),
            2 => {
                let length = self.varint()?;
                Ok(Some((number, wire, 0, self.take(length)?)))
            }
            5 => Ok(Some((number, wire, 0, self.take(4)?))),
            _ => Err(malformed()),
        }
    }
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

fn map_entry(bytes: &[u8], binary: bool) -> Result<(String, Value), ApiError> {
    let mut reader = Reader { bytes };
    let (mut key, mut value) = (String::new(), json!(""));
    while let Some((number, _, _, data)) = reader.field()? {
        match number {
            1 => key = text(data)?,
            2 if binary => value = json!(base64::engine::general_purpose::STANDARD.encode(data)),
            2 => value = json!(text(data)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn time(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut reader = Reader { bytes };
    let mut seconds = 0i64;
    while let Some((number, _, varint, _)) = reader.field()? {
        if number == 1 {
            seconds = varint as i64;
        }
    }
    Ok(json!(crate::etcd_snapshot::names::rfc3339_unix(seconds)))
}

/// Decodes one message by its field table.
fn message(bytes: &[u8], fields: &[Field]) -> Result<Map<String, Value>, ApiError> {
    let mut reader = Reader { bytes };
    let mut out = Map::new();
    while let Some((number, wire, varint, data)) = reader.field()? {
        let Some(&(_, name, kind)) = fields.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let length_delimited = wire == 2;
        match kind {
            // gogo-protobuf writes every string, empty ones too: empty means unset.
            Kind::Str if length_delimited && data.is_empty() => {}
            Kind::Str if length_delimited => {
                out.insert(name.into(), json!(text(data)?));
            }
            Kind::Bytes if length_delimited => {
                out.insert(
                    name.into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(data)),
                );
            }
            Kind::Int if !length_delimited => {
                out.insert(name.into(), json!(varint as i64));
            }
            Kind::Bool if !length_delimited => {
                out.insert(name.into(), json!(varint != 0));
            }
            Kind::StrMap | Kind::BytesMap if length_delimited => {
                let (key, value) = map_entry(data, matches!(kind, Kind::BytesMap))?;
                let map = out.entry(name).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(key, value);
                }
            }
            Kind::RepeatedStr if length_delimited => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(text(data)?));
                }
            }
            Kind::Time if length_delimited => {
                out.insert(name.into(), time(data)?);
            }
            Kind::Message(inner) if length_delimited => {
                out.insert(name.into(), Value::Object(message(data, inner)?));
            }
            Kind::RepeatedMessage(inner) if length_delimited => {
                let item = Value::Object(message(data, inner)?);
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(item);
                }
            }
            _ => return Err(malformed()),
        }
    }
    Ok(out)
}

/// The JSON object of a protobuf request body.
pub fn decode(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(b"k8s\0").ok_or_else(malformed)?;
    let unknown = message(envelope, UNKNOWN)?;
    let kind = unknown
        .get("typeMeta")
        .and_then(|meta| meta.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let fields = match kind {
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|raw| base64::engine::general_purpose::STANDARD.decode(raw).ok())
        .unwrap_or_default();
    let mut object = message(&raw, fields)?;
    object.insert("kind".into(), json!(kind));
    if let Some(api_version) = unknown
        .get("typeMeta")
        .and_then(|meta| meta.get("apiVersion"))
    {
        object.insert("apiVersion".into(), api_version.clone());
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_configmap_decodes_from_the_envelope() {
        let meta = [field(1, b"c1"), field(3, b"default")].concat();
        let entry = [field(1, b"a"), field(2, b"1")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let unknown = [field(1, &type_meta), field(2, &raw)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let object = decode(&body, "application/vnd.kubernetes.protobuf").expect("decodes");
        assert_eq!(
            object,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c1", "namespace": "default"}, "data": {"a": "1"}})
        );
        assert!(decode(b"{}", "application/vnd.kubernetes.protobuf").is_err());
    }
}
