use kmemd::cli::{self, Parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Parsed::Help(h)) => print!("{h}"),
        Ok(Parsed::Version(v)) => println!("{v}"),
        Ok(Parsed::Run(config)) => {
            // Minimal dispatch so watch mode can be tested; the lead's main.rs replaces this.
            let level = match (config.quiet, config.verbosity) {
                (true, _) => log::LevelFilter::Error,
                (_, 0) => log::LevelFilter::Warn,
                (_, 1) => log::LevelFilter::Info,
                (_, 2) => log::LevelFilter::Debug,
                _ => log::LevelFilter::Trace,
            };
            let _ = simple_logger::SimpleLogger::new().with_level(level).init();
            let result = match config.mode {
                cli::Mode::Watch(_) => kmemd::watch::run(&config),
                _ => Err("not implemented yet".to_string()),
            };
            match result {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    eprintln!("kmemd: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("kmemd: {e}");
            std::process::exit(2);
        }
    }
}
