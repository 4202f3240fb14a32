//! `image-syncer`: flags → config → engine → report; the exit code says whether all succeeded.

use std::process::ExitCode;

use image_syncer::{cli, config::Config, engine, logging, registry::Registries, report, signals, stores::Stores, term};

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
fn run(args: &cli::Args) -> Result<bool, String> {
    let mut config = Config::from_args(args).map_err(|e| e.to_string())?;
    // The live display: on a terminal, unless the log goes to a file or only errors are wanted.
    config.job.live = args.log.is_none() && !args.quiet && term::stderr_is_live();
    let registries =
        Registries::new(config.auth, config.tls, config.limits, config.job.proc).map_err(|e| e.to_string())?;
    let stores =
        Stores::new(registries).with_layouts(&config.layouts, config.base.as_deref()).map_err(|e| e.to_string())?;
    signals::install();
    let report = engine::run(config.job, &stores);
    // Bundles written out (an archive is made only from a run that was not interrupted).
    let (notes, finished) = match stores.finish(signals::exit_code().is_some()) {
        Ok(notes) => (notes, true),
        Err(e) => {
            log::error!("{e}");
            (Vec::new(), false)
        }
    };
    if let Some((path, format)) = &config.output {
        let pairs: Vec<_> = report.synced.iter().map(|p| (p.src.to_string(), p.dst.to_string())).collect();
        report::write_images(path, *format, &pairs)?;
    }
    if let Some((path, format)) = &config.failed_output {
        let pairs: Vec<_> = report.failures.iter().map(engine::Failure::endpoints).collect();
        report::write_images(path, *format, &pairs)?;
    }
    if let Some(path) = &config.report {
        report::write_report(path, &report)?;
    }
    report::log_failures(&report.failures);
    let mut summary = report.totals.summary();
    for note in notes {
        summary.push_str("; ");
        summary.push_str(&note);
    }
    log::info!(target: logging::SUMMARY, "{summary}");
    let what = if report.totals.verify { "Verification" } else { "Synchronization" };
    log::info!(target: logging::SUMMARY, "{what} finished, {} images failed, cost {:.2?}", report.failures.len(), report.elapsed);
    Ok(finished && report.failures.is_empty() && signals::exit_code().is_none())
}
