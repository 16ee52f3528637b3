//! Thin and loud: parse args, load and validate the configuration (exit 64 on any problem,
//! before a port is bound), then run until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

use pacsgate::app::Gateway;
use pacsgate::cli::{
    CertCommand, Cli, Command, DoctorArgs, HealthcheckArgs, KeyAlgorithm, RunArgs,
};
use pacsgate::config::{Config, ConfigError, KeyPairPaths};
use pacsgate::{telemetry, tls};

/// EX_USAGE from sysexits.h: the configuration (or the command line) is wrong.
const EXIT_CONFIG: u8 = 64;
/// EX_UNAVAILABLE: a port could not be bound or the runtime failed.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Doctor(args)) => return doctor(&args),
        Some(Command::Cert(cmd)) => cert(cmd),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Storage { args }) => return pacsgate::storage::run(&args),
        Some(Command::Healthcheck(args)) => return healthcheck(&args),
        Some(Command::Completions { shell }) => emit(&pacsgate::docs::completions(shell)),
        Some(Command::Man { out_dir }) => man(out_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("pacsgate: configuration error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Unavailable(msg)) => {
            eprintln!("pacsgate: {msg}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}

enum Failure {
    Config(ConfigError),
    Unavailable(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<pacsgate::tls::TlsError> for Failure {
    fn from(e: pacsgate::tls::TlsError) -> Self {
        Failure::Config(e.into())
    }
}

fn run(args: &RunArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config)?;
    telemetry::init(config.log.format, &config.log.level);
    let gateway = Gateway::prepare(config)?;
    let runtime = runtime(gateway.worker_threads())
        .map_err(|e| Failure::Unavailable(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let bound = gateway
            .bind()
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        bound
            .drop_privileges()
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        bound.serve(shutdown_signal()).await;
        Ok(())
    })
}

/// One worker per usable CPU (0 = auto). On a single CPU (a pinned sidecar) the
/// current-thread scheduler does the same work without cross-thread synchronisation.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn check(args: &RunArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config)?;
    emit(pacsgate::check::describe(&config)?.as_bytes())
}

fn doctor(args: &DoctorArgs) -> ExitCode {
    let findings = pacsgate::doctor::run(&args.run.config, args.orthanc_config.as_deref());
    for f in &findings {
        println!("{f}");
    }
    if pacsgate::doctor::failed(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Exit 0 healthy, 1 unhealthy (what container HEALTHCHECK and exec probes expect), 64 on a
/// bad --url.
fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    match pacsgate::healthcheck::probe(&args.url, args.timeout) {
        Ok(status) => {
            println!("healthy: {} answered {status}", args.url);
            ExitCode::SUCCESS
        }
        Err(e) if e.is_usage() => {
            eprintln!("pacsgate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("pacsgate: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cert(cmd: CertCommand) -> Result<(), Failure> {
    match cmd {
        CertCommand::Inspect { file } => {
            emit(tls::inspect::describe(&file)?.as_bytes())?;
        }
        CertCommand::SelfSigned {
            cert,
            key,
            hostnames,
            algorithm,
            force,
        } => {
            let paths = KeyPairPaths {
                cert: cert.clone(),
                key,
                cert_key: "--cert",
                key_key: "--key",
            };
            let kind = match algorithm {
                KeyAlgorithm::Ecdsa => tls::self_signed::KeyKind::EcdsaP256,
                KeyAlgorithm::Rsa => tls::self_signed::KeyKind::Rsa2048,
            };
            let mode = tls::self_signed::WriteMode {
                overwrite: force,
                create_dirs: false,
            };
            tls::self_signed::generate(&paths, kind, &hostnames, mode)?;
            emit(tls::inspect::describe(&cert)?.as_bytes())?;
        }
    }
    Ok(())
}

fn man(out_dir: Option<&std::path::Path>) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::Unavailable(format!("man: {e}"));
    match out_dir {
        Some(dir) => pacsgate::docs::man_pages_to(dir).map_err(failed),
        None => emit(&pacsgate::docs::man_page().map_err(failed)?),
    }
}

/// Write command output to stdout. A reader that went away (`pacsgate cert inspect F |
/// head`) is not an error: Rust ignores SIGPIPE, so `print!` would panic (exit 101) on
/// EPIPE; we stop writing and exit 0 instead.
fn emit(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Unavailable(format!("cannot write to stdout: {e}"))),
    }
}

fn hash_password() -> Result<(), Failure> {
    let hash = pacsgate::http::policy::hash_cli::run()
        .map_err(|e| Failure::Unavailable(format!("hash-password: {e}")))?;
    emit(format!("{hash}\n").as_bytes())
}

/// mimalloc: the proxy allocates small, short-lived objects per request (headers, URIs)
/// across threads; glibc's allocator showed up at ~6 % of CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
