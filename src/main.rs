//! The `veritrace` binary: flag parsing only; everything else is library code.

// mimalloc: the pipeline allocates on one thread and frees on another (records cross a
// channel); glibc's allocator spends a measurable share of a core on that, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    veritrace::cli::main()
}
