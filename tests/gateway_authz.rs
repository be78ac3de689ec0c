//! The `authgate` binary as a real process: its `[authz]` and `[[rule]]`s,
//! applied the same way by its own proxy and by the decision endpoint
//! behind nginx `auth_request` and Caddy `forward_auth`.
//!
//! Each answer is judged by what reached the upstream echo, not only by the
//! status a front chose to show.

#[path = "common/gateway.rs"]
mod fixtures;

use http::{Method, StatusCode};

use fixtures::*;

/// One rule of each kind, and the default `deny`.
const RULES: &str = r#"
[authz]
default = "deny"

[[rule]]
name = "admin-read"
path = "/admin/"
methods = ["GET", "HEAD"]
roles = ["admin", "auditor"]
[[rule]]
name = "admin"
path = "/admin/"
roles = ["admin"]
[[rule]]
name = "audit"
path = "/audit/"
scopes = ["audit:read"]
[[rule]]
name = "open"
path = "/open/"
public = true
[[rule]]
name = "app"
path = "/app/"
"#;

struct Edge {
    _upstream: Upstream,
    gateway: Gateway,
    _nginx: Process,
    _caddy: Process,
    fronts: [Front; 3],
}

async fn edge(extra: &str) -> Edge {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, extra));
    let (nginx, nginx_port) = start_nginx(gateway.addr, upstream.port).await;
    let (caddy, caddy_port) = start_caddy(gateway.addr, upstream.port).await;
    Edge {
        _upstream: upstream,
        fronts: [
            Front::new("authgate proxy", gateway.addr.port()),
            Front::new("nginx auth_request", nginx_port),
            Front::new("caddy forward_auth", caddy_port),
        ],
        gateway,
        _nginx: nginx,
        _caddy: caddy,
    }
}

/// The subject the upstream was told, when the request reached it.
fn reached(reply: &Reply) -> Option<String> {
    let echo = echo_of(&reply.text)?;
    Some(
        echo["headers"]["x-auth-subject"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// `reply` is a `200` from `front`; with `subject`, the upstream was also
/// told that subject (`""` for a public rule's request, which states none).
fn assert_passed(front: &Front, reply: &Reply, subject: Option<&str>) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}: {}",
        front.name,
        reply.text
    );
    if let Some(subject) = subject {
        assert_eq!(reached(reply).as_deref(), Some(subject), "{}", front.name);
    }
}

/// `reply` is a refusal with `status` that never reached the upstream;
/// from the gateway's own proxy and from Caddy (which passes the decision
/// endpoint's answer on), the challenge is RFC 6750's for a `403`.
fn assert_refused(front: &Front, what: &str, reply: &Reply, status: StatusCode) {
    assert_eq!(
        reply.status, status,
        "{}: {what}: {}",
        front.name, reply.text
    );
    assert_eq!(
        reached(reply),
        None,
        "{}: {what} reached the upstream",
        front.name
    );
    if status == StatusCode::FORBIDDEN && front.name != "nginx auth_request" {
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{}: {what}: {challenge}",
            front.name
        );
    }
}

#[tokio::test]
async fn each_kind_of_rule_decides_the_same_through_every_front() {
    let edge = edge(RULES).await;
    let proxy = &edge.fronts[0];
    let admin = bearer_token(proxy, "admin").await;
    let operator = operator_cookie(&edge.gateway).await;
    let origin = |front: &Front| format!("http://127.0.0.1:{}", front.port);

    for front in &edge.fronts {
        let as_admin = [("authorization", admin.as_str())];
        let as_operator = [("cookie", operator.as_str())];

        // Roles, narrowed by methods: reading /admin/ takes admin or
        // auditor, anything else admin.
        let reply = front.get("/admin/users", &as_admin).await;
        assert_passed(front, &reply, Some("admin"));
        let reply = front.get("/admin/users", &as_operator).await;
        assert_refused(
            front,
            "operator reads /admin/",
            &reply,
            StatusCode::FORBIDDEN,
        );
        let reply = front
            .send(Method::HEAD, "/admin/users", &as_operator, "")
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}: HEAD", front.name);
        let site = origin(front);
        let reply = front
            .send(
                Method::DELETE,
                "/admin/users/7",
                &[("cookie", operator.as_str()), ("origin", &site)],
                "",
            )
            .await;
        assert_refused(front, "operator deletes", &reply, StatusCode::FORBIDDEN);
        let reply = front
            .send(Method::DELETE, "/admin/users/7", &as_admin, "")
            .await;
        assert_passed(front, &reply, Some("admin"));
        let reply = front.get("/admin/users", &[]).await;
        assert_refused(
            front,
            "anonymous reads /admin/",
            &reply,
            StatusCode::UNAUTHORIZED,
        );

        // Scopes: the 403 names the scope that was needed.
        let reply = front.get("/audit/log", &as_admin).await;
        assert_passed(front, &reply, None);
        let reply = front.get("/audit/log", &as_operator).await;
        assert_refused(
            front,
            "operator reads /audit/",
            &reply,
            StatusCode::FORBIDDEN,
        );
        if front.name != "nginx auth_request" {
            let challenge = reply.headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.ends_with(r#"scope="audit:read""#),
                "{}: {challenge}",
                front.name
            );
        }

        // A public rule: no token, and no identity stated.
        let reply = front.get("/open/page.html", &[]).await;
        assert_passed(front, &reply, Some(""));

        // A rule with neither roles nor scopes: any verified token.
        let reply = front.get("/app/x", &as_operator).await;
        assert_passed(front, &reply, Some("operator"));

        // The default, deny: 403 with a token, 401 without.
        let reply = front.get("/elsewhere", &as_admin).await;
        assert_refused(front, "admin, no rule", &reply, StatusCode::FORBIDDEN);
        let reply = front.get("/elsewhere", &[]).await;
        assert_refused(
            front,
            "anonymous, no rule",
            &reply,
            StatusCode::UNAUTHORIZED,
        );
    }
}

#[tokio::test]
async fn a_path_with_another_reading_never_gets_a_kinder_answer() {
    let edge = edge(RULES).await;
    let operator = operator_cookie(&edge.gateway).await;
    // Each resolves to a path under /admin/ (refused to the operator) or
    // hides one behind the public /open/.
    let paths = [
        "/open/../admin/users",
        "/open/%2e%2e/admin/users",
        "/open/..;/admin/users",
        "/open/..%2fadmin/users",
        "/open/%2e%2e%2fadmin/users",
        "/open//../admin/users",
        "/%61dmin/users",
        "/admin%2fusers",
        "/open/%2561dmin",
        "/open/./../admin/users",
    ];
    for front in &edge.fronts {
        for path in paths {
            for headers in [&[][..], &[("cookie", operator.as_str())][..]] {
                let reply = front.get(path, headers).await;
                assert_eq!(
                    reached(&reply),
                    None,
                    "{}: {path} with {headers:?} reached the upstream: {} {}",
                    front.name,
                    reply.status,
                    reply.text
                );
                assert!(
                    reply.status.is_client_error() || reply.status.is_server_error(),
                    "{}: {path}: {}",
                    front.name,
                    reply.status
                );
            }
        }
    }
}

#[tokio::test]
async fn the_default_authenticated_lets_any_token_through_and_metrics_name_the_rule() {
    let metrics_port = free_port();
    let rules = RULES.replace(r#"default = "deny""#, r#"default = "authenticated""#);
    let edge = edge(&format!(
        "{rules}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ))
    .await;
    let operator = operator_cookie(&edge.gateway).await;
    for front in &edge.fronts {
        let reply = front.get("/elsewhere", &[("cookie", &operator)]).await;
        assert_passed(front, &reply, Some("operator"));
        let reply = front.get("/elsewhere", &[]).await;
        assert_refused(front, "anonymous", &reply, StatusCode::UNAUTHORIZED);
        let reply = front.get("/admin/x", &[("cookie", &operator)]).await;
        assert_refused(front, "operator", &reply, StatusCode::FORBIDDEN);
        let reply = front.get("/open/page", &[]).await;
        assert_passed(front, &reply, None);
    }

    let metrics = Front::new("metrics", metrics_port)
        .get("/metrics", &[])
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        r#"authgate_authz_rule_decisions_total{rule="admin-read",outcome="refused",reason="insufficient_scope"} 3"#,
        r#"authgate_authz_rule_decisions_total{rule="default",outcome="allowed",reason="ok"} 3"#,
        r#"authgate_authz_rule_decisions_total{rule="open",outcome="allowed",reason="ok"} 3"#,
    ] {
        assert!(
            metrics.text.contains(line),
            "{line} is not among\n{}",
            metrics.text
        );
    }
    // The label is a configured name, never a path.
    assert!(!metrics.text.contains("rule=\"/"), "{}", metrics.text);
    assert!(!metrics.text.contains("elsewhere"), "{}", metrics.text);
}

#[test]
fn authgate_check_names_the_line_of_a_rule_that_can_never_match() {
    let dir = temp_dir("authz-check");
    let config = dir.join("gateway.toml");
    let text = gateway_config(1, RULES).replace("[[rule]]\nname = \"app\"", "[[rule]]\nname = \"admin-delete\"\npath = \"/admin/users/\"\nmethods = [\"DELETE\"]\nroles = [\"admin\"]\n[[rule]]\nname = \"app\"");
    std::fs::write(&config, &text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(&config)
        .output()
        .expect("run authgate check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let line = text
        .lines()
        .position(|l| l == "path = \"/admin/users/\"")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("gateway.toml:{line}")) && stderr.contains("rule[4].path"),
        "{stderr}"
    );
    assert!(stderr.contains("can never match"), "{stderr}");
}

#[tokio::test]
async fn an_administrator_signs_a_user_out_everywhere() {
    let edge = edge("").await;
    let proxy = &edge.fronts[0];
    let admin = bearer_token(proxy, "admin").await;
    let operator = operator_cookie(&edge.gateway).await;
    let sign_out = "/_authgate/users/operator/sign-out";
    for front in &edge.fronts {
        let reply = front.get("/app/x", &[("cookie", &operator)]).await;
        assert_passed(front, &reply, None);
    }

    // Not an administrator: 403 naming the role; no token: 401.
    let site = format!("http://127.0.0.1:{}", proxy.port);
    let reply = proxy
        .send(
            Method::POST,
            "/_authgate/users/admin/sign-out",
            &[("cookie", &operator), ("origin", &site)],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("role:admin"), "{}", reply.text);
    let reply = proxy.send(Method::POST, sign_out, &[], "").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    // The administrator still works after the operator's attempt.
    let reply = proxy.get("/app/x", &[("authorization", &admin)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let reply = proxy
        .send(Method::POST, sign_out, &[("authorization", &admin)], "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["username"], "operator");
    for front in &edge.fronts {
        let reply = front.get("/app/x", &[("cookie", &operator)]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{}: a signed-out token still works: {}",
            front.name,
            reply.text
        );
        assert_eq!(reached(&reply), None, "{}", front.name);
        let reply = front.get("/app/x", &[("authorization", &admin)]).await;
        assert_passed(front, &reply, None);
    }
}

/// Reads every `/app/` path for any token, writes there for administrators.
#[cfg(feature = "cedar")]
const CEDAR_POLICIES: &str = r#"
@id("read")
permit (principal, action in Action::"read", resource)
when { resource.path like "/app/*" };

@id("admin-write")
permit (principal, action in Action::"write", resource)
when { principal.roles.contains("admin") && resource.path like "/app/*" };
"#;

#[cfg(feature = "cedar")]
#[tokio::test]
async fn cedar_policies_decide_after_the_rules_and_reload_on_sighup() {
    let dir = temp_dir("cedar");
    let policies = dir.join("policies.cedar");
    std::fs::write(&policies, CEDAR_POLICIES).unwrap();
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies.cedarschema");
    let cedar = format!(
        "[authz]\ndefault = \"authenticated\"\ncedar = \"{}\"\ncedar_schema = \"{}\"\n[[rule]]\nname = \"open\"\npath = \"/open/\"\npublic = true\n",
        policies.display(),
        schema.display()
    );
    let edge = edge(&cedar).await;
    let proxy = &edge.fronts[0];
    let admin = bearer_token(proxy, "admin").await;
    let operator = operator_cookie(&edge.gateway).await;

    for front in &edge.fronts {
        let site = format!("http://127.0.0.1:{}", front.port);
        let as_operator = [("cookie", operator.as_str()), ("origin", site.as_str())];
        let as_admin = [("authorization", admin.as_str())];
        let reply = front.get("/app/x", &as_operator).await;
        assert_passed(front, &reply, Some("operator"));
        let reply = front.send(Method::DELETE, "/app/x", &as_operator, "").await;
        assert_refused(front, "operator deletes", &reply, StatusCode::FORBIDDEN);
        let reply = front.send(Method::DELETE, "/app/x", &as_admin, "").await;
        assert_passed(front, &reply, None);
        // No permit: refused, whoever asks.
        let reply = front.get("/elsewhere", &as_admin).await;
        assert_refused(front, "no permit", &reply, StatusCode::FORBIDDEN);
        let reply = front.get("/app/x", &[]).await;
        assert_refused(front, "anonymous", &reply, StatusCode::UNAUTHORIZED);
        // A public rule needs no token and no policy.
        let reply = front.get("/open/x", &[]).await;
        assert_passed(front, &reply, None);
    }

    // SIGHUP puts a new set in force: reading now takes the role admin.
    std::fs::write(
        &policies,
        CEDAR_POLICIES.replace(
            "when { resource.path like \"/app/*\" };",
            "when { principal.roles.contains(\"admin\") && resource.path like \"/app/*\" };",
        ),
    )
    .unwrap();
    edge.gateway.signal("HUP");
    let operator_reads = || async {
        proxy
            .get("/app/x", &[("cookie", operator.as_str())])
            .await
            .status
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while operator_reads().await == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policies never came in force"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(operator_reads().await, StatusCode::FORBIDDEN);

    // A file that does not parse is refused; the set in force stays.
    std::fs::write(&policies, "permit (principal, action, resource) when {").unwrap();
    edge.gateway.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(operator_reads().await, StatusCode::FORBIDDEN);
    let reply = proxy.get("/app/x", &[("authorization", &admin)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // `authgate check` names the file and the line.
    let config = dir.join("gateway.toml");
    std::fs::write(&config, gateway_config(1, &cedar)).unwrap();
    std::fs::write(
        &policies,
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { principal.nope };\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("policies.cedar:3"), "{stderr}");
}

/// A reload reads the file again, an `ephemeral` signing key included: the
/// key the running presets sign with stays accepted, so no token (and no
/// new sign-in) stops working.
#[tokio::test]
async fn tokens_signed_before_and_after_a_reload_keep_working() {
    let edge = edge("").await;
    let proxy = &edge.fronts[0];
    let before = bearer_token(proxy, "admin").await;
    edge.gateway.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = bearer_token(proxy, "admin").await;
    for front in &edge.fronts {
        for token in [&before, &after] {
            let reply = front.get("/app/x", &[("authorization", token)]).await;
            assert_passed(front, &reply, None);
        }
    }
}
