//! The `authgate` binary as a real process: attacks on the edge (config).
//!
//! A configuration that opens a known hole is warned about by `authgate
//! check` and refused at start unless `[server] accept_risks` names that
//! risk; a decision endpoint that collides with another route is a
//! configuration error, never a panic; `authgate user add` keeps the users
//! file private, writes it through an unpredictable temporary file, applies
//! the password policy and refuses look-alike usernames.

#[path = "common/gateway.rs"]
mod fixtures;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fixtures::{TempDir, free_port, temp_dir, users_file};

/// A configuration with one login preset, the private copy of the example
/// users file, and `server` and `rest` added to `[server]` and after it.
fn config(server: &str, rest: &str) -> String {
    format!(
        r#"[server]
{server}

[keys]
signing_key = "ephemeral"

[users]
file = "{users}"

[[login]]
preset = "bearer_pair"

[log]
level = "warn"

{rest}
"#,
        users = users_file().display()
    )
}

const LOOPBACK: &str = "listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]";

fn write(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(path)
        .output()
        .unwrap()
}

/// What `authgate --config path` did: `Ok(stderr)` when it started
/// (printed its address; it is stopped then), `Err(stderr)` when it exited.
fn start(path: &Path) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("--config")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_default();
    let started = line.starts_with("authgate listening on");
    if started {
        let _ = child.kill();
    } else {
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "authgate panicked: {stderr}");
    if started {
        Ok(stderr)
    } else {
        assert!(!status.success(), "authgate exited quietly: {stderr}");
        Err(stderr)
    }
}

/// One risky configuration: its risk's name, the key and line an error
/// must name, and the configuration (`{accept}` stands where the
/// `accept_risks` line goes, inside `[server]`).
struct Risky {
    risk: &'static str,
    key: &'static str,
    line: usize,
    text: String,
}

fn risky_configurations(dir: &TempDir) -> Vec<Risky> {
    let mut cases = Vec::new();
    let mut case = |risk, key, line, server: &str, rest: &str| {
        cases.push(Risky {
            risk,
            key,
            line,
            text: config(&format!("{{accept}}\n{server}"), rest),
        })
    };
    // The config's own lines: `[server]` is 1, `{accept}` 2, `server` from 3.
    let rest_line = |server_lines: usize, offset: usize| 2 + server_lines + 14 + offset;
    case(
        "public_root",
        "guard.public_paths[1]",
        rest_line(2, 2),
        LOOPBACK,
        "[guard]\npublic_paths = [\"/public/\",\n  \"/\"]\n",
    );
    case(
        "trust_everyone",
        "server.trusted_proxies",
        4,
        "listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\", \"0.0.0.0/1\", \"128.0.0.0/1\"]",
        "",
    );
    case(
        "trust_everyone",
        "server.trusted_proxies",
        4,
        "listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"::/0\"]",
        "",
    );
    case(
        "unlimited_login_attempts",
        "lockout.enabled",
        rest_line(2, 1),
        LOOPBACK,
        "[lockout]\nenabled = false\n[throttle]\nper_minute = 0\n",
    );
    case(
        "development_off_loopback",
        "server.development",
        4,
        "listen = \"0.0.0.0:0\"\ndevelopment = true",
        "",
    );
    case(
        "metrics_off_loopback",
        "metrics.listen",
        rest_line(2, 1),
        LOOPBACK,
        "[metrics]\nlisten = \"0.0.0.0:0\"\n",
    );
    let port = free_port();
    case(
        "upstream_loop",
        "upstream.url",
        rest_line(1, 1),
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("[upstream]\nurl = \"http://127.0.0.1:{port}\"\n"),
    );
    for upstream in ["127.0.0.1", "localhost"] {
        let port = free_port();
        case(
            "upstream_loop",
            "upstream.url",
            rest_line(1, 1),
            &format!("listen = \"0.0.0.0:{port}\""),
            &format!("[upstream]\nurl = \"http://{upstream}:{port}\"\n"),
        );
    }
    // Secrets others may read: a users file and a signing key of mode 0644.
    let users = dir.join("shared-users.toml");
    std::fs::copy(users_file(), &users).unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    cases.push(Risky {
        risk: "users_file_permissions",
        key: "users.file",
        line: 9,
        text: config("{accept}\nlisten = \"127.0.0.1:0\"", "").replace(
            &users_file().display().to_string(),
            &users.display().to_string(),
        ),
    });
    let key = dir.join("signing.pem");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/ed25519_private.pem"),
        &key,
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    cases.push(Risky {
        risk: "signing_key_permissions",
        key: "keys.signing_key",
        line: 6,
        text: config("{accept}\nlisten = \"127.0.0.1:0\"", "")
            .replace("\"ephemeral\"", &format!("{:?}", key.display().to_string())),
    });
    cases
}

/// `authgate check` warns about and fails on each configuration opening
/// `risk`, naming the key and line; `authgate` refuses to start with it
/// (naming the key, the line and `accept_risks`), also when another risk is
/// named; with `risk` named, the file checks and the gateway starts.
fn assert_refused_until_named(risk: &str) {
    let dir = temp_dir(risk);
    let cases: Vec<Risky> = risky_configurations(&dir)
        .into_iter()
        .filter(|case| case.risk == risk)
        .collect();
    assert!(!cases.is_empty(), "no configuration opens {risk}");
    for (i, case) in cases.into_iter().enumerate() {
        let name = format!("risky-{i}-{}.toml", case.risk);
        let what = format!("{} ({name})", case.risk);
        let at = format!("{name}:{}: {}:", case.line, case.key);

        // Not named, or another risk named: check warns, start refuses.
        for accept in ["", "accept_risks = [\"some_other_risk\"]"] {
            let accept = if accept.is_empty() {
                String::new()
            } else {
                let other = if case.risk == "public_root" {
                    "trust_everyone"
                } else {
                    "public_root"
                };
                accept.replace("some_other_risk", other)
            };
            let path = write(&dir, &name, &case.text.replace("{accept}", &accept));
            let out = check(&path);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: check passed: {stderr}");
            assert!(
                stderr.contains("warning") && stderr.contains(&at) && stderr.contains(case.risk),
                "{what}: check said {stderr}"
            );
            let refused = start(&path).err().unwrap_or_else(|| {
                panic!("{what}: authgate started without the risk named ({accept})")
            });
            assert!(
                refused.contains(&at)
                    && refused.contains("accept_risks")
                    && refused.contains(case.risk),
                "{what}: the refusal does not name the key and the way to accept: {refused}"
            );
        }

        // Named: check passes and the gateway starts.
        let path = write(
            &dir,
            &name,
            &case
                .text
                .replace("{accept}", &format!("accept_risks = [\"{}\"]", case.risk)),
        );
        let out = check(&path);
        assert!(
            out.status.success(),
            "{what}: check with the risk named: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Err(stderr) = start(&path) {
            panic!("{what}: did not start with the risk named: {stderr}");
        }
    }
}

macro_rules! risk_tests {
    ($($test:ident: $risk:literal,)*) => {
        $(
            #[test]
            fn $test() {
                assert_refused_until_named($risk);
            }
        )*
    };
}

risk_tests! {
    a_public_root_is_refused_until_named: "public_root",
    trusting_every_address_is_refused_until_named: "trust_everyone",
    logins_without_lockout_or_throttle_are_refused_until_named: "unlimited_login_attempts",
    development_off_loopback_is_refused_until_named: "development_off_loopback",
    metrics_off_loopback_are_refused_until_named: "metrics_off_loopback",
    a_users_file_others_can_read_is_refused_until_named: "users_file_permissions",
    a_signing_key_others_can_read_is_refused_until_named: "signing_key_permissions",
    an_upstream_loop_is_refused_until_named: "upstream_loop",
}

/// `--allow-insecure` accepts every risk a file opens at once, for `check`
/// and at start, each still printed as a warning; without it the same file
/// is refused.
#[test]
fn allow_insecure_accepts_every_risk_and_still_warns() {
    let dir = temp_dir("allow-insecure");
    for case in risky_configurations(&dir) {
        let name = format!("insecure-{}.toml", case.risk);
        let path = write(&dir, &name, &case.text.replace("{accept}", ""));
        let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("check")
            .arg(&path)
            .arg("--allow-insecure")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: check: {stderr}", case.risk);
        assert!(
            stderr.contains("warning")
                && stderr.contains("--allow-insecure")
                && stderr.contains(case.risk),
            "{}: check said {stderr}",
            case.risk
        );
        assert!(
            start(&path).is_err(),
            "{}: started without the flag",
            case.risk
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("--config")
            .arg(&path)
            .arg("--allow-insecure")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            line.starts_with("authgate listening on"),
            "{}: did not start with --allow-insecure: {line} {stderr}",
            case.risk
        );
        assert!(
            stderr.contains("accepted by --allow-insecure") && stderr.contains(case.risk),
            "{}: no warning at start: {stderr}",
            case.risk
        );
    }
}

#[test]
fn an_unknown_risk_name_is_a_configuration_error() {
    let dir = temp_dir("risk-names");
    let path = write(
        &dir,
        "gateway.toml",
        &config(
            &format!("{LOOPBACK}\naccept_risks = [\"public_root\", \"everything\"]"),
            "",
        ),
    );
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("gateway.toml:4: server.accept_risks[1]:")
            && stderr.contains("public_root"),
        "{stderr}"
    );
}

#[test]
fn a_verify_path_that_collides_with_another_route_is_a_configuration_error() {
    let dir = temp_dir("collisions");
    let all_presets = "[[login]]\npreset = \"cookie_session\"\n[[login]]\npreset = \"pascal_case\"\n\
        [[login]]\npreset = \"auth_token\"\n[[login]]\npreset = \"x_auth_token\"\ndeprecated_get = true\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("/healthz", String::new(), "verify.path"),
        ("/metrics", String::new(), "verify.path"),
        ("/api/login", String::new(), "verify.path"),
        ("/api/login/refresh", String::new(), "verify.path"),
        ("/login", all_presets.to_owned(), "verify.path"),
        ("/login/otp", all_presets.to_owned(), "verify.path"),
        (
            "/api/auth/lockedUsers",
            all_presets.to_owned(),
            "verify.path",
        ),
        (
            "/api/auth/lockedUsers/x",
            all_presets.to_owned(),
            "verify.path",
        ),
        (
            "/authenticate/signin",
            all_presets.to_owned(),
            "verify.path",
        ),
        (
            "/api/serviceAccounts/verify",
            all_presets.to_owned(),
            "verify.path",
        ),
        ("/api/v1/login", all_presets.to_owned(), "verify.path"),
        (
            "/auth/login",
            "[[login]]\npreset = \"cookie_session\"\nprefix = \"/auth\"\n".to_owned(),
            "verify.path",
        ),
        ("/{anything}", String::new(), "verify.path"),
        ("/_authgate/{*rest}", String::new(), "verify.path"),
        ("/:verify", String::new(), "verify.path"),
        // Two presets whose routes meet: /api + /login is bearer_pair's /api/login.
        (
            "/_authgate/verify",
            "[[login]]\npreset = \"cookie_session\"\nprefix = \"/api\"\n".to_owned(),
            "login[1].prefix",
        ),
    ];
    for (verify, logins, key) in cases {
        let path = write(
            &dir,
            "gateway.toml",
            &config(
                LOOPBACK,
                &format!("{logins}\n[verify]\npath = \"{verify}\"\n"),
            ),
        );
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{verify} ({key}): check passed: {stderr}"
        );
        assert!(
            stderr.contains(&format!(": {key}:")) && stderr.contains("gateway.toml:"),
            "{verify}: {stderr}"
        );
        let refused = start(&path)
            .err()
            .unwrap_or_else(|| panic!("{verify}: authgate started"));
        assert!(
            refused.contains(&format!(": {key}:")),
            "{verify}: {refused}"
        );
    }

    // A path of its own is fine, beside every preset.
    let path = write(
        &dir,
        "gateway.toml",
        &config(
            LOOPBACK,
            &format!("{all_presets}\n[verify]\npath = \"/_authgate/check\"\n"),
        ),
    );
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start(&path).unwrap();
}

// ---------------------------------------------------------------------------
// authgate user add

const STRONG: &str = "correct horse battery staple";

fn user_add(file: &Path, username: &str, password: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["user", "add"])
        .arg(file)
        .arg(username)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn user_add_keeps_the_files_mode_and_creates_a_new_file_private() {
    let dir = temp_dir("user-mode");
    let users = dir.join("users.toml");
    let out = user_add(&users, "alice", STRONG);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&users), 0o600, "a new users file is private");

    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = user_add(&users, "bob", STRONG);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&users), 0o600, "0600 stays 0600");

    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = user_add(&users, "carol", STRONG);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&users), 0o640, "the operator's mode is kept");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("users_file_permissions"),
        "a shared users file is pointed out: {stderr}"
    );
    let text = std::fs::read_to_string(&users).unwrap();
    for name in ["alice", "bob", "carol"] {
        assert!(text.contains(&format!("username = \"{name}\"")), "{text}");
    }
}

#[test]
fn user_add_writes_through_an_unpredictable_temporary_file() {
    let dir = temp_dir("user-temp");
    let users = dir.join("users.toml");
    assert!(user_add(&users, "alice", STRONG).status.success());
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Another local user plants links where a predictable temporary file
    // would go, pointing at a file of theirs (and at one of the operator's).
    let victim = dir.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let planted = [
        "users.toml.new",
        "users.toml.tmp",
        ".users.toml.tmp",
        "users.toml~",
        "users.new",
        "users.tmp",
    ];
    for name in planted {
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    let out = user_add(&users, "bob", STRONG);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    for name in planted {
        let link = std::fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(link.file_type().is_symlink(), "{name} was replaced");
    }
    let metadata = std::fs::symlink_metadata(&users).unwrap();
    assert!(metadata.file_type().is_file(), "users.toml is a plain file");
    assert_eq!(mode(&users), 0o600);
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    // Nothing else is left behind.
    let mut names: Vec<String> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = planted.iter().map(|s| s.to_string()).collect();
    expected.extend(["users.toml".to_owned(), "victim".to_owned()]);
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn user_add_applies_the_password_policy() {
    let dir = temp_dir("user-policy");
    let users = dir.join("users.toml");
    assert!(user_add(&users, "alice", STRONG).status.success());
    let before = std::fs::read_to_string(&users).unwrap();
    for weak in ["password", "abc", "qwertyuiop", "12345678", "bobbobbob"] {
        let out = user_add(&users, "bob", weak);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{weak:?} was accepted");
        assert!(stderr.contains("password"), "{weak:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    }
    assert!(
        user_add(&users, "bob", "vivid-lantern-orbit-42")
            .status
            .success()
    );
}

#[test]
fn user_add_refuses_a_username_equal_to_another_after_nfkc_and_case_folding() {
    let dir = temp_dir("user-names");
    let users = dir.join("users.toml");
    for name in ["admin", "kelvin", "office"] {
        assert!(user_add(&users, name, STRONG).status.success(), "{name}");
    }
    let before = std::fs::read_to_string(&users).unwrap();
    for look_alike in [
        "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}", // fullwidth "admin"
        "\u{ff21}\u{ff24}\u{ff2d}\u{ff29}\u{ff2e}", // fullwidth "ADMIN"
        "\u{212a}elvin",                            // KELVIN SIGN
        "o\u{fb03}ce",                              // the "ffi" ligature
        "ADMIN",
        "Admin",
    ] {
        let out = user_add(&users, look_alike, STRONG);
        assert!(
            !out.status.success(),
            "{look_alike:?} was added beside its look-alike"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("already"), "{look_alike:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    }
    assert!(user_add(&users, "operator", STRONG).status.success());
}

// ---------------------------------------------------------------------------
// Reload

#[tokio::test]
async fn a_reload_that_opens_a_risk_is_refused_and_the_running_rules_stay() {
    use fixtures::{DENIED_CLIENT, Front, Gateway, Upstream, gateway_config};
    let upstream = Upstream::start().await;
    let config = gateway_config(upstream.port, "");
    let gateway = Gateway::start(&config);
    let front = Front::new("authgate", gateway.addr.port());
    let denied = || async {
        front
            .send_with(&front.denied, http::Method::GET, "/public/x", &[], "")
            .await
            .status
    };
    assert_eq!(denied().await, http::StatusCode::FORBIDDEN);

    // Without the deny rule, and trusting every address: refused, so the
    // deny rule stays in force.
    let open = config.replace(&format!("ip_deny = [\"{DENIED_CLIENT}\"]\n"), "");
    let risky = open.replace(
        "trusted_proxies = [\"127.0.0.1\"]",
        "trusted_proxies = [\"0.0.0.0/0\"]",
    );
    assert_ne!(risky, open);
    std::fs::write(&gateway.config, &risky).unwrap();
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(denied().await, http::StatusCode::FORBIDDEN);

    // The same change without the risk is taken.
    std::fs::write(&gateway.config, &open).unwrap();
    gateway.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while denied().await != http::StatusCode::OK {
        assert!(Instant::now() < deadline, "the safe reload was not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
