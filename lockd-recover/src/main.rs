fn main() -> std::process::ExitCode {
    lockd_recover::cli::main()
}
