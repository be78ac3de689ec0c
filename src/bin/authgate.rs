//! `authgate`: login endpoints, a forward-auth decision endpoint and a
//! reverse proxy, from one TOML file (see the guide docs/gateway.md).
//!
//! ```text
//! authgate --config FILE [--listen ADDR] [--upstream URL] [--allow-insecure]
//! authgate check FILE [--allow-insecure]
//! authgate hash-password                      (the password on standard input)
//! authgate user add FILE USERNAME [--spaces A,B] [--roles R,S] [--scopes A,B] [--totp-secret BASE32]
//! ```
//!
//! A file that opens a known hole (a public `/`, trusted proxies that cover
//! every address, no lockout and no throttle, development mode or metrics
//! off loopback, a users file or signing key others can read, an upstream
//! that is the gateway itself) is warned about by `check`, which then
//! fails, and refused at start and on reload, unless `[server]
//! accept_risks` names each risk found ([`tower_authgate::gateway::risks`]),
//! or `--allow-insecure` accepts every risk at once (each still printed as
//! a warning): for test set-ups, never for a deployment.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

// The proxy allocates a few small buffers per request; mimalloc serves them
// with less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use tower_authgate::gateway::users_file::{AddUser, add_user, hash_password};
use tower_authgate::gateway::{Gateway, Settings, metrics_router, serve_until_signalled};

const USAGE: &str = "\
usage:
  authgate --config FILE [--listen ADDR] [--upstream URL] [--allow-insecure]
      serve the gateway the file describes; the flags override the file
  authgate check FILE [--allow-insecure]
      check the file (every value, key file and users file) without serving;
      fails on a risk that [server] accept_risks does not name
  --allow-insecure accepts every risk the file opens (each still printed as
      a warning); name the risks in [server] accept_risks instead
  authgate hash-password
      print an argon2 hash of the password read from standard input
  authgate user add FILE USERNAME [--spaces A,B] [--roles R,S] [--scopes A,B] [--totp-secret BASE32]
      add an account to a users file (created 0600), its password read from
      standard input and judged by the password policy
";

/// What the command line asks for.
enum Command {
    Serve {
        config: PathBuf,
        listen: Option<SocketAddr>,
        upstream: Option<String>,
        allow_insecure: bool,
    },
    Check {
        file: PathBuf,
        allow_insecure: bool,
    },
    HashPassword,
    AddUser {
        file: PathBuf,
        user: AddUser,
    },
    Help,
    Version,
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    let value = |flag: &str, next: Option<&String>| -> Result<String, String> {
        next.cloned().ok_or_else(|| format!("{flag} needs a value"))
    };
    match args.as_slice().first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("check") => {
            let rest: Vec<&String> = args.skip(1).collect();
            let allow_insecure = rest.iter().any(|arg| *arg == ALLOW_INSECURE);
            let files: Vec<&&String> = rest.iter().filter(|arg| **arg != ALLOW_INSECURE).collect();
            return match files.as_slice() {
                [file] => Ok(Command::Check {
                    file: PathBuf::from(file),
                    allow_insecure,
                }),
                _ => Err("authgate check takes one FILE (and --allow-insecure)".into()),
            };
        }
        Some("hash-password") => {
            return match args.len() {
                1 => Ok(Command::HashPassword),
                _ => Err("authgate hash-password takes no arguments (the password comes on standard input)".into()),
            };
        }
        Some("user") => {
            let rest: Vec<&String> = args.skip(1).collect();
            let (file, username, flags) = match rest.as_slice() {
                [add, file, username, flags @ ..] if add.as_str() == "add" => (file, username, flags),
                _ => return Err("usage: authgate user add FILE USERNAME [--spaces A,B] [--roles R,S] [--scopes A,B] [--totp-secret BASE32]".into()),
            };
            let mut user = AddUser::new(username.as_str());
            let mut flags = flags.iter();
            while let Some(flag) = flags.next() {
                let next = flags.next().copied();
                match flag.as_str() {
                    "--spaces" => user = user.with_spaces(list(&value(flag, next)?)),
                    "--roles" => user = user.with_roles(list(&value(flag, next)?)),
                    "--scopes" => user = user.with_scopes(list(&value(flag, next)?)),
                    "--totp-secret" => user = user.with_totp_secret(Some(value(flag, next)?)),
                    other => return Err(format!("unknown option {other:?}")),
                }
            }
            return Ok(Command::AddUser {
                file: PathBuf::from(file),
                user,
            });
        }
        _ => {}
    }
    let mut config = None;
    let mut listen = None;
    let mut upstream = None;
    let mut allow_insecure = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            ALLOW_INSECURE => allow_insecure = true,
            "--config" | "-c" => config = Some(PathBuf::from(value(arg, args.next())?)),
            "--listen" => {
                let addr = value(arg, args.next())?;
                listen = Some(
                    addr.parse()
                        .map_err(|_| format!("--listen: not an address and port: {addr:?}"))?,
                );
            }
            "--upstream" => upstream = Some(value(arg, args.next())?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let config = config.ok_or("--config FILE is required")?;
    Ok(Command::Serve {
        config,
        listen,
        upstream,
        allow_insecure,
    })
}

/// The flag that accepts every risk a file opens.
const ALLOW_INSECURE: &str = "--allow-insecure";

/// The risks of `settings` the gateway may start with (every one with
/// `--allow-insecure`), and the ones it refuses.
fn sort_risks(settings: &Settings, allow_insecure: bool) -> (Vec<String>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for finding in settings.risks() {
        if finding.accepted() {
            accepted.push(finding.to_string());
        } else if allow_insecure {
            accepted.push(format!("{finding} (accepted by --allow-insecure)"));
        } else {
            refused.push(finding.to_string());
        }
    }
    (accepted, refused)
}

/// The settings of `config` with the command line's overrides, refused
/// when they open a risk that `[server] accept_risks` does not name; the
/// accepted ones are printed.
fn load(
    config: &PathBuf,
    listen: Option<SocketAddr>,
    upstream: Option<&str>,
    allow_insecure: bool,
) -> Result<Settings, String> {
    let mut settings = Settings::load(config).map_err(|err| err.to_string())?;
    if let Some(listen) = listen {
        settings = settings.with_listen(listen);
    }
    if let Some(upstream) = upstream {
        settings = settings
            .with_upstream(upstream)
            .map_err(|err| err.to_string())?;
    }
    let (accepted, refused) = sort_risks(&settings, allow_insecure);
    for finding in &accepted {
        eprintln!("authgate: warning: {finding}");
    }
    if !refused.is_empty() {
        return Err(format!(
            "refusing to start with {} risk{} not accepted:\n{}",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
            refused.join("\n")
        ));
    }
    Ok(settings)
}

/// `authgate check FILE`: every error, then every risk as a warning; fails
/// when a risk is not accepted, as the gateway would not start.
fn check(file: &std::path::Path, allow_insecure: bool) -> Result<(), String> {
    let settings = Settings::load(file).map_err(|err| err.to_string())?;
    let (accepted, refused) = sort_risks(&settings, allow_insecure);
    for finding in accepted.iter().chain(&refused) {
        eprintln!("warning: {finding}");
    }
    let refused = refused.len();
    if refused > 0 {
        return Err(format!(
            "{}: {refused} risk{} not accepted: authgate will not start with this file",
            file.display(),
            if refused == 1 { "" } else { "s" }
        ));
    }
    println!("{}: ok", file.display());
    Ok(())
}

/// A warning when the users file at `path` (whose mode `user add` keeps)
/// can be read or written by its group or others.
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o066 != 0 {
                eprintln!(
                    "warning: {} can be read or written by its group or others (mode {mode:04o}): authgate serves it only when [server] accept_risks names \"users_file_permissions\"; chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|err| format!("cannot read the password: {err}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(password)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The runtime `settings` ask for: one thread drives everything (as one
/// nginx worker does) when `worker_threads = 1`, else a pool of workers.
fn runtime(settings: &Settings) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match settings.worker_threads() {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Raises the soft limit on open descriptors to the hard one, as far as
/// it goes: each client connection may hold an upstream connection too, and
/// `[server] max_connections` counts only the former. Warns when the limit
/// stays below what `max_connections` needs, since `accept` then fails
/// with "too many open files" (retried every 50 ms) before the cap is met.
#[cfg(target_os = "linux")]
fn raise_descriptor_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %err, "the descriptor limit could not be raised");
        }
    }
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    if let Some(current) = getrlimit(Resource::Nofile).current
        && current < needed
    {
        tracing::warn!(
            descriptors = current,
            max_connections,
            "the descriptor limit is below twice server.max_connections (a client and an upstream connection each): lower max_connections or raise the limit"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_descriptor_limit(_max_connections: usize) {}

async fn serve(
    settings: Settings,
    config: PathBuf,
    listen: Option<SocketAddr>,
    upstream: Option<String>,
    allow_insecure: bool,
) -> Result<(), String> {
    init_tracing(settings.log_level());
    raise_descriptor_limit(settings.connection_limits().max_connections());
    let gateway = Gateway::build(&settings).map_err(|err| err.to_string())?;
    if let Some(addr) = settings.metrics_listen() {
        let metrics = metrics_router(&gateway)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|err| format!("cannot listen on {addr} for metrics: {err}"))?;
        tracing::info!(listen = %addr, "metrics (Prometheus text format) at /metrics");
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, metrics).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(settings.listen())
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", settings.listen()))?;
    let local = listener.local_addr().map_err(|err| err.to_string())?;
    tracing::info!(
        listen = %local,
        upstream = settings.upstream_url().as_deref().unwrap_or("none"),
        config = %settings.path().display(),
        "authgate listening"
    );
    // Scripts and tests read the address from this line.
    let scheme = if settings.serves_tls() {
        "https"
    } else {
        "http"
    };
    println!("authgate listening on {scheme}://{local}");
    let grace = settings.shutdown_grace();
    let limits = settings.connection_limits();
    let reload = move || load(&config, listen, upstream.as_deref(), allow_insecure);
    serve_until_signalled(gateway, listener, grace, limits, reload)
        .await
        .map_err(|err| err.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("authgate: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Version => {
            println!("authgate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Check {
            file,
            allow_insecure,
        } => check(&file, allow_insecure),
        Command::HashPassword => read_password()
            .and_then(|password| hash_password(&password).map(|hash| println!("{hash}"))),
        Command::AddUser { file, user } => read_password().and_then(|password| {
            let name = user.username.clone();
            add_user(&file, user, &password).map(|()| {
                println!("added {name} to {}", file.display());
                warn_if_shared(&file);
            })
        }),
        Command::Serve {
            config,
            listen,
            upstream,
            allow_insecure,
        } => load(&config, listen, upstream.as_deref(), allow_insecure).and_then(|settings| {
            match runtime(&settings) {
                Ok(runtime) => {
                    runtime.block_on(serve(settings, config, listen, upstream, allow_insecure))
                }
                Err(err) => Err(format!("cannot start the runtime: {err}")),
            }
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("authgate: {err}");
            ExitCode::FAILURE
        }
    }
}
