//! `image-syncer`: flags → config → stores → engine (with the display chosen here) → report;
//! the exit code says whether all succeeded. `image-syncer doctor` goes flags → config →
//! doctor → its table; `image-syncer inventory` flags → config → stores → inventory → its
//! document; `image-syncer self-image` flags → config → self_image → a line saying what it
//! wrote.

use std::process::ExitCode;

use image_syncer::config::{self_image_request, Config, DoctorConfig, InventoryConfig};
use image_syncer::registry::Registries;
use image_syncer::stores::Stores;
use image_syncer::{cli, doctor, engine, inventory, logging, malloc, report, self_image, signals, ui};

fn main() -> ExitCode {
    malloc::tune();
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
    if args.command.first().is_some_and(|c| c == "inventory") {
        return run_inventory(&args);
    }
    if args.command.first().is_some_and(|c| c == "self-image") {
        return run_self_image(&args);
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
    let mut run = engine::run(config.job, &stores, display);
    // Bundles written out (an archive is made only from a run that was not interrupted).
    let bundles = stores.finish(signals::exit_code().is_some());
    let outputs = report::Outputs { images: config.output, failed: config.failed_output, report: config.report };
    let written = report::finish(&mut run, &outputs, &bundles)?;
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

/// `image-syncer inventory`: the document on stdout or in `--output`; exit 1 when something
/// could not be read (each named; the document holds the rest), 2 for unusable input.
fn run_inventory(args: &cli::Args) -> ExitCode {
    let config = match InventoryConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let InventoryConfig { auth, tls, limits, targets, layouts, output, proc } = config;
    let stores = Registries::new(auth, tls, limits, proc)
        .map_err(|e| e.to_string())
        .and_then(|r| Stores::new(r).with_layouts(&layouts, None).map_err(|e| e.to_string()));
    let stores = match stores {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    signals::install();
    let taken = inventory::take(&targets, &stores, proc);
    for problem in &taken.problems {
        log::error!("inventory: {problem}");
    }
    if let Err(e) = inventory::write(output.as_deref(), &taken.inventory) {
        let to = output.as_ref().map_or("stdout".to_string(), |p| p.display().to_string());
        log::error!("inventory: cannot write {to}: {e}");
        return ExitCode::from(1);
    }
    match (signals::exit_code(), taken.problems.is_empty()) {
        (Some(code), _) => ExitCode::from(code),
        (None, true) => ExitCode::SUCCESS,
        (None, false) => ExitCode::from(1),
    }
}

/// `image-syncer self-image`: what was written, and the command that pushes it, on stdout;
/// unusable input (a binary that is not static) exit 2, a layout that cannot be written 1.
fn run_self_image(args: &cli::Args) -> ExitCode {
    let request = match self_image_request(args) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match self_image::write(&request) {
        Ok(w) => {
            let name = if request.name.is_empty() { String::new() } else { format!("{}:", request.name) };
            let tag = request.tags.first().map_or("", String::as_str);
            println!(
                "wrote image-syncer {} (linux/{}, {:.1} MiB of binary, created {}) to {} as {}: {}",
                env!("CARGO_PKG_VERSION"),
                w.architectures.join(", linux/"),
                w.binary_bytes as f64 / (1024.0 * 1024.0),
                w.created,
                request.layout.location,
                request.tags.join(", "),
                w.digest
            );
            println!(
                "push it with: image-syncer copy {}:{name}{tag} REGISTRY/REPOSITORY:{tag}",
                request.layout.location
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
