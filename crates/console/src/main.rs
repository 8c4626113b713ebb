//! The `carerecord-console` binary: configuration from the environment, then serve.

fn main() -> std::process::ExitCode {
    carerecord_platform::app::main::<carerecord_console::Application>()
}
