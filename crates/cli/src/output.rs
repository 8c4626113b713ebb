//! How results are shown: readable tables by default, canonical protobuf JSON with `--json`.

use std::sync::OnceLock;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(carerecord_contracts::FILE_DESCRIPTOR_SET)
            .expect("the contracts' descriptor set decodes")
    })
}

/// A protobuf message as canonical proto3 JSON (the mapping every gRPC tool uses).
pub fn to_json<M: prost::Message>(message: &M, full_name: &str) -> serde_json::Value {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is in the contracts"));
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message re-decodes with its own descriptor");
    let options = SerializeOptions::new().skip_default_fields(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("JSON serialisation of a message")
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `message` as JSON, or calls `human` to print it for people.
    pub fn message<M: prost::Message>(&self, message: &M, full_name: &str, human: impl FnOnce(&M)) {
        if self.json {
            println!("{}", to_json(message, full_name));
        } else {
            human(message);
        }
    }

    /// Prints a list as a JSON array, or as a table.
    pub fn list<M: prost::Message>(
        &self,
        items: &[M],
        full_name: &str,
        headers: &[&str],
        row: impl Fn(&M) -> Vec<String>,
    ) {
        if self.json {
            let values: Vec<serde_json::Value> =
                items.iter().map(|m| to_json(m, full_name)).collect();
            println!("{}", serde_json::Value::Array(values));
        } else if items.is_empty() {
            println!("(none)");
        } else {
            print_table(headers, items.iter().map(row));
        }
    }
}

pub fn print_table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers);
    for row in rows {
        table.add_row(row);
    }
    println!("{table}");
}

/// `key: value` lines, for one resource.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        if !value.is_empty() {
            println!("{key:>width$}  {value}");
        }
    }
}

pub fn date(date: Option<&carerecord_contracts::common::v1::Date>) -> String {
    match date {
        Some(d) if d.year > 0 => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        _ => String::new(),
    }
}

pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|t| t.to_string()).unwrap_or_default()
}

/// A failed call to `service` at `endpoint`, for people: code, message and each google.rpc detail.
pub fn call_failed(service: &str, endpoint: &str, status: &tonic::Status) -> String {
    if status.code() == tonic::Code::Unavailable {
        return format!(
            "{service} is unavailable at {endpoint} ({}); is it running (`make run`), and is --{service} right?",
            status.message()
        );
    }
    describe_status(status)
}

/// The reply to a call, or why the call failed in words (`failed`, usually [`call_failed`]).
pub async fn reply<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    failed: impl FnOnce(tonic::Status) -> String,
) -> Result<T, String> {
    call.await.map(tonic::Response::into_inner).map_err(failed)
}

/// The display form of a `google.rpc`-detailed status: code, message, and each field violation.
pub fn describe_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(bad_request) = details.bad_request() {
        for violation in &bad_request.field_violations {
            text.push_str(&format!(
                "\n  field {}: {}",
                violation.field, violation.description
            ));
        }
    }
    if let Some(info) = details.error_info() {
        text.push_str(&format!("\n  reason: {}", info.reason));
    }
    if let Some(resource) = details.resource_info()
        && !resource.resource_name.is_empty()
    {
        text.push_str(&format!(
            "\n  resource: {} {}",
            resource.resource_type, resource.resource_name
        ));
    }
    if let Some(precondition) = details.precondition_failure() {
        for violation in &precondition.violations {
            text.push_str(&format!(
                "\n  precondition {} on {}: {}",
                violation.r#type, violation.subject, violation.description
            ));
        }
    }
    text
}
