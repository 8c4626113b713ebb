//! The `carerecord-fhir` binary: configuration from the environment, then serve.

fn main() -> std::process::ExitCode {
    carerecord_platform::app::main::<carerecord_fhir::Application>()
}
