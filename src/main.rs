//! The `veritrace` binary: flag parsing only; everything else is library code.

fn main() -> std::process::ExitCode {
    veritrace::cli::main()
}
