//! `image-syncer`: flags → config → engine → report; the exit code says whether all succeeded.

use std::process::ExitCode;

use image_syncer::{cli, config::Config, engine, logging, report};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().collect()) {
        Ok(a) => a,
        Err(early) => {
            return if early.status.is_ok() {
                println!("{}", early.output);
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", early.output.trim_end());
                ExitCode::from(2)
            };
        }
    };
    if args.version {
        println!("image-syncer {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(args.log.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)` when every task succeeded.
fn run(args: &cli::Args) -> Result<bool, String> {
    let config = Config::from_args(args).map_err(|e| e.to_string())?;
    let output = config.output.clone();
    let report = engine::run(config)?;
    if let Some((path, format)) = output {
        report::write_success(&path, format, &report.synced)?;
    }
    log::info!("{}", report.totals.summary());
    log::info!("Synchronization finished, {} tasks failed, cost {:.2?}", report.failed, report.elapsed);
    Ok(report.failed == 0)
}
