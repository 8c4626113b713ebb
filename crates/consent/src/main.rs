//! The `carerecord-consent` binary: configuration from the environment, then serve.

fn main() -> std::process::ExitCode {
    carerecord_platform::app::main::<carerecord_consent::Application>()
}
