use kmemd::cli::{self, Parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Parsed::Help(h)) => print!("{h}"),
        Ok(Parsed::Version(v)) => println!("{v}"),
        Ok(Parsed::Run(_config)) => {
            eprintln!("kmemd: not implemented yet");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("kmemd: {e}");
            std::process::exit(2);
        }
    }
}
