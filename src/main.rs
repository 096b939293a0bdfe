use kmemd::cli::{self, Parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&args) {
        Ok(Parsed::Help(h)) => return print!("{h}"),
        Ok(Parsed::Version(v)) => return println!("{v}"),
        Ok(Parsed::Run(config)) => config,
        Err(e) => {
            eprintln!("kmemd: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = kmemd::app::init_logging(&config) {
        eprintln!("kmemd: {e}");
        std::process::exit(2);
    }
    let code = match kmemd::app::run(&config) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            1
        }
    };
    if let Some(kib) = kmemd::sys::os::peak_rss_kib() {
        log::debug!("peak RSS (VmHWM): {kib} kB");
    }
    std::process::exit(code)
}
