//! The codec every generated carerecord service and client uses: prost's, plus one rule the
//! contracts state for every request of every module: no text field holds NUL (U+0000).
//!
//! PostgreSQL cannot store NUL in text and SQLite can, so without one rule the same request would
//! be stored on one backend and fail on the other. The rule is applied to the request's bytes before
//! they are decoded, with the contracts' own descriptors telling string fields from bytes and
//! nested messages, so no service can forget it: a request holding NUL anywhere in a string field
//! is refused INVALID_ARGUMENT, with a `google.rpc.BadRequest` naming each such field.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// What a field holding NUL is told.
pub const NUL_REFUSED: &str = "must not contain the NUL character (U+0000)";

/// The codec named in the generated code (`codec_path`).
#[derive(Debug, Clone, Copy)]
pub struct CheckedCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        CheckedCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + prost::Name + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            inner: ProstDecoder::new(BufferSettings::default()),
        }
    }
}

/// Decodes with prost after checking a request's string fields.
#[derive(Debug)]
pub struct CheckedDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default + prost::Name> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Only requests: what a service answers is its own to vouch for.
        if U::NAME.ends_with("Request") {
            let name = U::full_name();
            let fields = nul_text_fields(&name, bytes::Buf::chunk(buf));
            if !fields.is_empty() {
                return Err(refusal(&name, &fields));
            }
        }
        self.inner.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The paths of the string fields holding NUL in `encoded`, a message of the contracts' type
/// `message` (its full name, e.g. `carerecord.records.v1.CreateRecordRequest`): what the codec
/// refuses a request for. The codec applies it itself; this is for fuzzing and tests.
pub fn nul_text_fields(message: &str, encoded: &[u8]) -> Vec<String> {
    let mut fields = Vec::new();
    nul_fields(schema(), message, encoded, "", 0, &mut fields);
    fields
}

/// INVALID_ARGUMENT naming each field, in the shape every service answers with.
fn refusal(message: &str, fields: &[String]) -> Status {
    let package = message.rsplit_once('.').map_or(message, |(p, _)| p);
    // Data access's contract names its reason INVALID_REQUEST; the others INVALID_ARGUMENT.
    let reason = if package == "carerecord.access.v1" {
        "INVALID_REQUEST"
    } else {
        "INVALID_ARGUMENT"
    };
    let mut details = tonic_types::ErrorDetails::new();
    details.set_bad_request(
        fields
            .iter()
            .take(20)
            .map(|f| tonic_types::FieldViolation::new(f, NUL_REFUSED))
            .collect::<Vec<_>>(),
    );
    details.set_error_info(reason, package, []);
    let first = fields.first().map_or("", String::as_str);
    <Status as tonic_types::StatusExt>::with_error_details(
        tonic::Code::InvalidArgument,
        format!("{first}: {NUL_REFUSED}"),
        details,
    )
}

/// What the scanner needs to know of a message field.
#[derive(Debug, Clone)]
enum Kind {
    Text,
    Message(String),
    Other,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    repeated: bool,
}

/// Message full name -> field number -> field.
type Schema = HashMap<String, HashMap<u32, Field>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let set =
            prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut schema = Schema::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                add(&mut schema, package, message);
            }
        }
        schema
    })
}

fn add(schema: &mut Schema, scope: &str, message: &prost_types::DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    let fields = message
        .field
        .iter()
        .map(|f| {
            let kind = match f.r#type() {
                Type::String => Kind::Text,
                Type::Message => Kind::Message(f.type_name().trim_start_matches('.').to_owned()),
                _ => Kind::Other,
            };
            let field = Field {
                name: f.name().to_owned(),
                kind,
                repeated: f.label() == Label::Repeated,
            };
            (u32::try_from(f.number()).unwrap_or(0), field)
        })
        .collect();
    for nested in &message.nested_type {
        add(schema, &name, nested);
    }
    schema.insert(name, fields);
}

/// How deep nested messages are scanned: prost's recursion limit, past which it refuses to decode
/// the request anyway. Without a bound, a small request nesting a message thousands deep would
/// overflow the stack of the thread decoding it (and build ever longer paths on the way).
const MAX_DEPTH: usize = 100;

/// Appends to `out` the path of each string field of the encoded `message` (under `path`, `depth`
/// messages deep) that holds NUL. Malformed bytes are left for prost to refuse.
fn nul_fields(
    schema: &Schema,
    message: &str,
    mut bytes: &[u8],
    path: &str,
    depth: usize,
    out: &mut Vec<String>,
) {
    let Some(fields) = schema.get(message) else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    let mut counts: HashMap<u32, usize> = HashMap::new();
    while !bytes.is_empty() {
        let Some(key) = varint(&mut bytes) else {
            return;
        };
        let (number, wire) = ((key >> 3) as u32, key & 7);
        let value: &[u8] = match wire {
            0 => {
                if varint(&mut bytes).is_none() {
                    return;
                }
                continue;
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                let Some(rest) = bytes.get(width..) else {
                    return;
                };
                bytes = rest;
                continue;
            }
            2 => {
                let Some(len) = varint(&mut bytes) else {
                    return;
                };
                let Ok(len) = usize::try_from(len) else {
                    return;
                };
                let Some(value) = bytes.get(..len) else {
                    return;
                };
                bytes = &bytes[len..];
                value
            }
            // A group (deprecated, never in these contracts) is skipped as prost skips it, so the
            // fields after it are scanned as prost decodes them.
            3 => {
                if skip_group(&mut bytes, number, depth + 1).is_none() {
                    return;
                }
                continue;
            }
            _ => return,
        };
        let Some(field) = fields.get(&number) else {
            continue;
        };
        let index = counts.entry(number).or_default();
        let here = if path.is_empty() {
            field.name.clone()
        } else {
            format!("{path}.{}", field.name)
        };
        let here = if field.repeated {
            format!("{here}[{index}]")
        } else {
            here
        };
        *index += 1;
        match &field.kind {
            Kind::Text if value.contains(&0) => out.push(here),
            Kind::Message(name) => nul_fields(schema, name, value, &here, depth + 1, out),
            _ => {}
        }
    }
}

/// Skips a group whose start tag (field `number`) was just read, through its matching end tag;
/// `None` where prost would refuse the bytes (no end tag, a mismatched one, nesting past the limit).
fn skip_group(bytes: &mut &[u8], number: u32, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    loop {
        let key = varint(bytes)?;
        let (inner, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                varint(bytes)?;
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                *bytes = bytes.get(width..)?;
            }
            2 => {
                let len = usize::try_from(varint(bytes)?).ok()?;
                *bytes = bytes.get(len..)?;
            }
            3 => skip_group(bytes, inner, depth + 1)?,
            4 if inner == number => return Some(()),
            _ => return None,
        }
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::v1::{CreateRecordRequest, Record};

    #[test]
    fn nul_is_found_in_nested_and_repeated_text_but_not_in_bytes() {
        let request = CreateRecordRequest {
            request_id: "a\0b".into(),
            record: Some(Record {
                source_system: "epr\0".into(),
                data_classes: vec!["ok".into(), "bad\0".into()],
                payload: b"{\"x\":\"\0\"}".to_vec(),
                ..Record::default()
            }),
            requester: None,
        };
        let mut fields = Vec::new();
        nul_fields(
            schema(),
            "carerecord.records.v1.CreateRecordRequest",
            &request.encode_to_vec(),
            "",
            0,
            &mut fields,
        );
        assert_eq!(
            fields,
            [
                "request_id",
                "record.data_classes[1]",
                "record.source_system"
            ]
        );
        let clean = CreateRecordRequest {
            request_id: "r".into(),
            ..CreateRecordRequest::default()
        };
        let mut none = Vec::new();
        nul_fields(
            schema(),
            "carerecord.records.v1.CreateRecordRequest",
            &clean.encode_to_vec(),
            "",
            0,
            &mut none,
        );
        assert!(none.is_empty());
    }

    /// Found by fuzzing: an unknown field encoded as a group (which prost skips) hid the fields
    /// after it from the scanner, so a NUL after it reached the service.
    #[test]
    fn nul_after_a_skipped_group_is_found() {
        let after = CreateRecordRequest {
            request_id: "a\0b".into(),
            ..CreateRecordRequest::default()
        }
        .encode_to_vec();
        // Field 12 as a group holding a varint, a nested group and a string, then its end tag.
        let mut encoded = vec![
            (12 << 3) | 3,
            8,
            1,
            (13 << 3) | 3,
            (13 << 3) | 4,
            18,
            1,
            b'x',
        ];
        encoded.push((12 << 3) | 4);
        encoded.extend_from_slice(&after);
        let message = "carerecord.records.v1.CreateRecordRequest";
        assert!(CreateRecordRequest::decode(encoded.as_slice()).is_ok());
        assert_eq!(nul_text_fields(message, &encoded), ["request_id"]);
        // A group never closed is left for prost to refuse.
        let unclosed = [(12 << 3) | 3, 8, 1];
        assert!(CreateRecordRequest::decode(unclosed.as_slice()).is_err());
        assert!(nul_text_fields(message, &unclosed).is_empty());
    }

    #[test]
    fn nul_is_named_by_its_path_deep_in_nested_repeated_messages() {
        use crate::common::v1::Requester;
        use crate::consent::v1 as pb;
        let request = pb::CreateConsentDirectiveRequest {
            request_id: "id\0".into(),
            directive: Some(pb::ConsentDirective {
                policy_text: "ok".into(),
                grantor_display: "\0".into(),
                provisions: vec![pb::Provision {
                    provisions: vec![pb::Provision {
                        actors: vec![
                            pb::ProvisionActor::default(),
                            pb::ProvisionActor {
                                user_id: "a\0b".into(),
                                ..Default::default()
                            },
                        ],
                        study_ids: vec!["x".into(), "\0".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            requester: Some(Requester {
                display_name: "Dr\0".into(),
                ..Default::default()
            }),
        };
        let mut fields = Vec::new();
        nul_fields(
            schema(),
            "carerecord.consent.v1.CreateConsentDirectiveRequest",
            &request.encode_to_vec(),
            "",
            0,
            &mut fields,
        );
        fields.sort();
        assert_eq!(
            fields,
            [
                "directive.grantor_display",
                "directive.provisions[0].provisions[0].actors[1].user_id",
                "directive.provisions[0].provisions[0].study_ids[1]",
                "request_id",
                "requester.display_name",
            ]
        );
    }

    /// A CreateConsentDirectiveRequest whose directive nests provisions `depth` deep, the innermost
    /// with a purpose holding NUL, encoded from the inside out (prost's own encoder recurses too).
    fn nested_directive(depth: usize) -> Vec<u8> {
        fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            prost::encoding::encode_varint(inner.len() as u64, &mut out);
            out.extend_from_slice(inner);
            out
        }
        let mut provision = wrap(0x1a, b"\0");
        for _ in 1..depth {
            provision = wrap(0x3a, &provision);
        }
        wrap(0x12, &wrap(0x3a, &provision))
    }

    #[test]
    fn deeply_nested_requests_are_scanned_in_bounded_stack_and_paths() {
        let message = "carerecord.consent.v1.CreateConsentDirectiveRequest";
        // Within prost's limit the NUL is found, however deep.
        let found = nul_text_fields(message, &nested_directive(MAX_DEPTH - 2));
        assert_eq!(found.len(), 1);
        assert!(found[0].ends_with("provisions[0].purposes[0]"), "{found:?}");
        // A request of a few hundred kilobytes nested a hundred thousand deep, scanned on a
        // thread with a Tokio worker's stack (2 MiB), as a service decodes it: it returns, and
        // leaves the request to prost, which refuses it as too deep.
        let deep = nested_directive(100_000);
        assert!(deep.len() < 1 << 20);
        let scanned = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || nul_text_fields(message, &deep))
            .unwrap()
            .join()
            .expect("the scan returns");
        assert!(scanned.is_empty(), "{scanned:?}");
        assert!(
            crate::consent::v1::CreateConsentDirectiveRequest::decode(
                nested_directive(100_000).as_slice()
            )
            .is_err()
        );
    }

    #[test]
    fn the_refusal_names_the_fields_in_the_package_domain() {
        use tonic_types::StatusExt;
        let status = refusal(
            "carerecord.access.v1.CreateRecordRequest",
            &["request_id".to_owned()],
        );
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_REQUEST");
        assert_eq!(details.error_info().unwrap().domain, "carerecord.access.v1");
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "request_id"
        );
    }
}
