//! `cbdc-wallet`: the command line of the cbdc wallet. Everything lives in the library
//! (`cbdc_wallet::cli`), so that it is tested and documented in one place.

fn main() -> std::process::ExitCode {
    cbdc_wallet::cli::main()
}
