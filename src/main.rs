//! `image-syncer`: flags → config → stores → engine (with the display chosen here) → report;
//! the exit code says whether all succeeded. `image-syncer doctor` goes flags → config →
//! doctor → its table.

use std::process::ExitCode;

use image_syncer::config::{Config, DoctorConfig};
use image_syncer::registry::Registries;
use image_syncer::stores::Stores;
use image_syncer::{cli, doctor, engine, logging, report, signals, ui};

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
    if let Err(e) = logging::init(args.log.as_deref(), args.quiet) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if args.command.first().is_some_and(|c| c == "doctor") {
        return run_doctor(&args);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(signals::exit_code().unwrap_or(1)),
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)` when every image synced; `Err` for unusable input (nothing was sent then).
fn run(args: &cli::Args) -> Result<bool, Box<dyn std::error::Error>> {
    let config = Config::from_args(args)?;
    let registries = Registries::new(config.auth, config.tls, config.limits, config.job.proc)?;
    let stores = Stores::new(registries).with_layouts(&config.layouts, config.base.as_deref())?;
    // The live display: on a terminal, unless the log goes to a file or only errors are wanted.
    let display = ui::display(args.log.is_none() && !args.quiet && ui::term::stderr_is_live());
    signals::install();
    let run = engine::run(config.job, &stores, display);
    // Bundles written out (an archive is made only from a run that was not interrupted).
    let bundles = stores.finish(signals::exit_code().is_some());
    let outputs = report::Outputs { images: config.output, failed: config.failed_output, report: config.report };
    let written = report::finish(&run, &outputs, &bundles)?;
    Ok(written && run.failures.is_empty() && signals::exit_code().is_none())
}

/// `image-syncer doctor`: the table on stdout; a registry that cannot be reached is one error
/// line naming it (exit 1), unusable input exit 2.
fn run_doctor(args: &cli::Args) -> ExitCode {
    let config = match DoctorConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match doctor::run(config.auth, config.tls, config.limits, &config.target) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
