//! The issuer-side traits' in-memory implementations.

#![cfg(feature = "login")]
mod common;

use std::sync::Arc;

use common::*;
use tower_authgate::TokenError;
use tower_authgate::clock::now_seconds;
use tower_authgate::login::{
    Authenticator, JwtIssuer, LoginError, LoginFlow, LoginOutcome, MemoryUsers, NewUser,
    PairLifetimes, RefreshOptions, ServiceAccounts, TokenIssuer,
};
use tower_authgate::otp::{TotpAlgorithm, TotpVerifier};
use tower_authgate::store::{MemoryRevocations, RevocationCheck, RevocationStore};
use tower_authgate::token::{Algorithm, TokenKind};

fn issuer() -> Arc<JwtIssuer> {
    Arc::new(JwtIssuer::new(signing_key(Algorithm::EdDSA), "test").unwrap())
}

fn users() -> Arc<MemoryUsers> {
    let users = MemoryUsers::new().unwrap();
    users
        .insert(
            NewUser::new("Admin", "s3cret")
                .spaces(["default_space"])
                .roles(["admin"]),
        )
        .unwrap();
    users
        .insert(
            NewUser::new("operator", "operator")
                .totp_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
                .unwrap(),
        )
        .unwrap();
    Arc::new(users)
}

#[tokio::test]
async fn memory_users_check_hashes_and_do_not_enumerate() {
    let users = users();
    let admin = users.authenticate("admin", "s3cret").await.unwrap();
    assert_eq!(admin.username, "Admin");
    assert_eq!(admin.spaces, ["default_space"]);
    assert!(
        users.authenticate("ADMIN ", "s3cret").await.is_ok(),
        "names are normalised"
    );
    assert_eq!(
        users.authenticate("admin", "S3cret").await,
        Err(LoginError::InvalidCredentials)
    );
    assert_eq!(
        users.authenticate("ghost", "s3cret").await,
        Err(LoginError::InvalidCredentials)
    );
    // Only the hash is kept: the Debug output and the principal carry no password.
    assert!(!format!("{users:?} {admin:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_pair_verifies_and_kinds_do_not_mix() {
    let issuer = issuer();
    let principal = users().find("admin").await.unwrap().unwrap();
    let pair = issuer.issue_pair(&principal, PairLifetimes::new()).unwrap();
    let refresh = pair.refresh.unwrap();
    assert_eq!(pair.access.claims.fam, refresh.claims.fam);
    assert_eq!(pair.access.claims.exi, 600);
    assert_eq!(refresh.claims.exi, 86_400);
    assert!(
        issuer
            .verify(&pair.access.token, &[TokenKind::Access])
            .await
            .is_ok()
    );
    assert_eq!(
        issuer.verify(&refresh.token, &[TokenKind::Access]).await,
        Err(LoginError::InvalidToken(TokenError::WrongKind))
    );
    assert_eq!(
        issuer
            .redeem_refresh(&pair.access.token, false)
            .await
            .map(|_| ()),
        Err(LoginError::InvalidToken(TokenError::WrongKind))
    );
    let verifier = issuer.access_verifier();
    assert!(
        verifier
            .verify::<serde_json::Value>(&pair.access.token)
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify::<serde_json::Value>(&refresh.token)
            .map(|_| ()),
        Err(TokenError::WrongKind)
    );
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_refresh_token() {
    let issuer = issuer();
    let flow = LoginFlow::new(users(), issuer.clone());
    let principal = users().find("admin").await.unwrap().unwrap();
    let refresh = issuer
        .issue_pair(&principal, PairLifetimes::new())
        .unwrap()
        .refresh
        .unwrap();
    for _ in 0..3 {
        let renewed = flow
            .refresh(&refresh.token, RefreshOptions::keeping())
            .await
            .unwrap();
        assert!(renewed.refresh.is_none());
        assert_eq!(renewed.access.claims.fam, refresh.claims.fam);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reuse_of_a_refresh_token_rotates_once_and_ends_the_family() {
    for _round in 0..20 {
        // Without a grace window: the second use is reuse.
        let issuer = Arc::new(
            JwtIssuer::new(signing_key(Algorithm::EdDSA), "test")
                .unwrap()
                .with_reuse_grace(std::time::Duration::ZERO),
        );
        let flow = Arc::new(LoginFlow::new(users(), issuer.clone()));
        let principal = users().find("admin").await.unwrap().unwrap();
        let pair = issuer.issue_pair(&principal, PairLifetimes::new()).unwrap();
        let refresh = pair.refresh.unwrap().token;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let flow = flow.clone();
                let refresh = refresh.clone();
                tokio::spawn(
                    async move { flow.refresh(&refresh, RefreshOptions::rotating()).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        let mut reused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(pair) => winners.push(pair),
                Err(LoginError::RefreshReused) => reused += 1,
                // A task that runs after the family was revoked sees it revoked.
                Err(LoginError::InvalidToken(TokenError::Revoked)) => reused += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one rotation");
        assert_eq!(reused, 7);
        // The reuse revoked the whole family, the winner's new tokens included.
        let winner = winners.pop().unwrap();
        assert_eq!(
            issuer
                .verify(&winner.access.token, &[TokenKind::Access])
                .await,
            Err(LoginError::InvalidToken(TokenError::Revoked))
        );
        assert!(
            flow.refresh(&winner.refresh.unwrap().token, RefreshOptions::rotating())
                .await
                .is_err()
        );
        assert!(
            issuer
                .verify(&pair.access.token, &[TokenKind::Access])
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn revoke_ends_the_token_and_its_family() {
    let store = Arc::new(MemoryRevocations::default());
    let shared: Arc<dyn RevocationStore> = store.clone();
    let issuer = JwtIssuer::new(signing_key(Algorithm::ES256), "test")
        .unwrap()
        .with_revocation_store(shared);
    let principal = users().find("admin").await.unwrap().unwrap();
    let pair = issuer.issue_pair(&principal, PairLifetimes::new()).unwrap();
    issuer.revoke(&pair.access.token).await.unwrap();
    let refresh = pair.refresh.unwrap();
    assert!(issuer.redeem_refresh(&refresh.token, false).await.is_err());
    match store.check(&refresh.claims.jti, refresh.claims.fam.as_deref()) {
        RevocationCheck::Ready(Ok(revoked)) => assert!(revoked),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn totp_flow_pending_token_is_single_use_and_codes_do_not_replay() {
    // Six wrong codes in a row: without a lockout, which would lock at five.
    let flow = LoginFlow::new(users(), issuer()).without_lockout();
    let LoginOutcome::TotpRequired(pending) = flow
        .password("operator", "operator", None, PairLifetimes::new())
        .await
        .unwrap()
    else {
        panic!("TOTP expected");
    };
    assert_eq!(pending.claims.usefor, TokenKind::OtpPending);
    let secret = totp_rs::Secret::Encoded("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into())
        .to_bytes()
        .unwrap();
    let totp = TotpVerifier::default();
    let code = totp.generate(&secret, now_seconds()).unwrap();
    for bad in ["", "12345", "1234567", " 123456", "١٢٣٤٥٦", "12 456"] {
        assert_eq!(
            flow.totp(&pending.token, bad, None).await,
            Err(LoginError::InvalidOtp),
            "{bad:?}"
        );
    }
    let accepted = flow.totp(&pending.token, &code, None).await.unwrap();
    assert_eq!(accepted.principal.username, "operator");
    assert!(
        flow.totp(&pending.token, &code, None).await.is_err(),
        "pending token reused"
    );
    // A fresh pending token with the same code: the step was used.
    let LoginOutcome::TotpRequired(again) = flow
        .password("operator", "operator", None, PairLifetimes::new())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        flow.totp(&again.token, &code, None).await,
        Err(LoginError::InvalidOtp)
    );
}

#[tokio::test]
async fn totp_drift_window_is_one_step() {
    let secret = b"12345678901234567890".to_vec();
    let totp = TotpVerifier::default();
    let now = now_seconds();
    for (offset, ok) in [
        (-60i64, false),
        (-30, true),
        (0, true),
        (30, true),
        (60, false),
    ] {
        let code = totp
            .generate(&secret, (now as i64 + offset) as u64)
            .unwrap();
        let result = totp
            .check(&format!("acct{offset}"), &secret, &code, now)
            .await;
        assert_eq!(result.is_ok(), ok, "offset {offset}");
    }
}

#[tokio::test]
async fn rfc6238_appendix_b_vectors() {
    // RFC 6238 Appendix B, 8 digits; the seeds are the ASCII strings of the RFC.
    let sha1 = b"12345678901234567890".to_vec();
    let sha256 = b"12345678901234567890123456789012".to_vec();
    let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
    let vectors: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];
    for (time, c1, c256, c512) in vectors {
        for (alg, secret, expected) in [
            (TotpAlgorithm::SHA1, &sha1, c1),
            (TotpAlgorithm::SHA256, &sha256, c256),
            (TotpAlgorithm::SHA512, &sha512, c512),
        ] {
            let totp = TotpVerifier::default().with_parameters(alg, 8, 30).unwrap();
            assert_eq!(
                totp.generate(secret, time).unwrap(),
                expected,
                "{alg:?} at {time}"
            );
            assert!(totp.check("rfc", secret, expected, time).await.is_ok());
        }
    }
}

#[tokio::test]
async fn service_accounts_are_admin_only_listed_and_revoked_one_by_one() {
    let issuer = issuer();
    let users = users();
    let admin = users.find("admin").await.unwrap().unwrap();
    let operator = users.find("operator").await.unwrap().unwrap();
    let accounts = ServiceAccounts::default();
    assert!(matches!(
        accounts.create(issuer.as_ref(), &operator, "x", 60).await,
        Err(LoginError::Forbidden(_))
    ));
    assert!(matches!(
        accounts.create(issuer.as_ref(), &admin, " ", 60).await,
        Err(LoginError::BadRequest(_))
    ));
    assert!(matches!(
        accounts.create(issuer.as_ref(), &admin, "x", 0).await,
        Err(LoginError::BadRequest(_))
    ));
    let (first, first_token) = accounts
        .create(issuer.as_ref(), &admin, "ci", 3600)
        .await
        .unwrap();
    let (_, second_token) = accounts
        .create(issuer.as_ref(), &admin, "backup", 7200)
        .await
        .unwrap();
    assert_eq!(accounts.list().await.unwrap().len(), 2);
    assert_eq!(first.roles, ["admin"]);
    let kinds = [TokenKind::ServiceAccount];
    assert!(issuer.verify(&first_token, &kinds).await.is_ok());
    assert!(accounts.revoke(issuer.as_ref(), &first.id).await.unwrap());
    assert!(!accounts.revoke(issuer.as_ref(), "missing").await.unwrap());
    assert!(issuer.verify(&first_token, &kinds).await.is_err());
    assert!(issuer.verify(&second_token, &kinds).await.is_ok());
    assert!(
        accounts
            .list()
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == first.id && a.revoked)
    );
}

/// An issuer with a movable clock and the default reuse grace window.
fn clocked_issuer() -> (Arc<JwtIssuer>, Arc<tower_authgate::clock::ManualClock>) {
    let clock = Arc::new(tower_authgate::clock::ManualClock::new(now_seconds()));
    let issuer = JwtIssuer::new(signing_key(Algorithm::EdDSA), "test")
        .unwrap()
        .with_clock(clock.clone());
    (Arc::new(issuer), clock)
}

#[tokio::test]
async fn within_the_grace_window_a_rotated_refresh_token_gives_a_sibling_pair() {
    let (issuer, clock) = clocked_issuer();
    assert_eq!(
        issuer.reuse_grace(),
        tower_authgate::login::DEFAULT_REUSE_GRACE
    );
    let flow = LoginFlow::new(users(), issuer.clone());
    let principal = users().find("admin").await.unwrap().unwrap();
    let refresh = issuer
        .issue_pair(&principal, PairLifetimes::new())
        .unwrap()
        .refresh
        .unwrap();
    let first = flow
        .refresh(&refresh.token, RefreshOptions::rotating())
        .await
        .unwrap();
    clock.advance(10);
    // A second tab, ten seconds later: a sibling pair in the same family.
    let second = flow
        .refresh(&refresh.token, RefreshOptions::rotating())
        .await
        .unwrap();
    assert_eq!(first.access.claims.fam, refresh.claims.fam);
    assert_eq!(second.access.claims.fam, refresh.claims.fam);
    assert_ne!(first.access.token, second.access.token);
    for pair in [&first, &second] {
        assert!(
            issuer
                .verify(&pair.access.token, &[TokenKind::Access])
                .await
                .is_ok()
        );
    }
    // After the window, the same token again ends the family: both
    // sessions' tokens with it.
    clock.advance(1);
    assert_eq!(
        flow.refresh(&refresh.token, RefreshOptions::rotating())
            .await
            .map(|_| ()),
        Err(LoginError::RefreshReused)
    );
    for pair in [first, second] {
        assert_eq!(
            issuer
                .verify(&pair.access.token, &[TokenKind::Access])
                .await
                .map(|_| ()),
            Err(LoginError::InvalidToken(TokenError::Revoked))
        );
        assert!(
            flow.refresh(&pair.refresh.unwrap().token, RefreshOptions::rotating())
                .await
                .is_err()
        );
    }
}

/// A revocation store that remembers how long each revocation lasts.
#[derive(Default)]
struct RecordingRevocations {
    inner: MemoryRevocations,
    untils: std::sync::Mutex<Vec<(String, u64)>>,
}

impl RevocationStore for RecordingRevocations {
    fn revoke(
        &self,
        id: &str,
        until: u64,
    ) -> tower_authgate::BoxFuture<'_, Result<bool, tower_authgate::store::StoreError>> {
        self.untils.lock().unwrap().push((id.to_owned(), until));
        self.inner.revoke(id, until)
    }

    fn check(&self, id: &str, family: Option<&str>) -> RevocationCheck {
        self.inner.check(id, family)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        cut_off: u64,
        until: u64,
    ) -> tower_authgate::BoxFuture<'_, Result<(), tower_authgate::store::StoreError>> {
        self.untils
            .lock()
            .unwrap()
            .push((subject.to_owned(), until));
        self.inner.revoke_subject(subject, cut_off, until)
    }

    fn check_subject(&self, subject: &str, issued_at: u64) -> RevocationCheck {
        self.inner.check_subject(subject, issued_at)
    }
}

#[tokio::test]
async fn signing_out_revokes_the_family_for_as_long_as_its_longest_refresh_token_lives() {
    let store = Arc::new(RecordingRevocations::default());
    let issuer = JwtIssuer::new(signing_key(Algorithm::EdDSA), "test")
        .unwrap()
        .with_revocation_store(store.clone());
    let principal = users().find("admin").await.unwrap().unwrap();
    // A "keep me logged in" session: 30-day refresh token, default access.
    let pair = issuer
        .issue_pair(&principal, PairLifetimes::new().with_refresh(30 * 86_400))
        .unwrap();
    let refresh = pair.refresh.unwrap();
    // Sign-out presents the access token (ten minutes).
    issuer.revoke(&pair.access.token).await.unwrap();
    let family = refresh.claims.fam.clone().unwrap();
    let until = store
        .untils
        .lock()
        .unwrap()
        .iter()
        .find(|(id, _)| *id == family)
        .map(|(_, until)| *until)
        .expect("the family is revoked");
    assert!(
        until >= refresh.claims.exp,
        "the family revocation ({until}) must outlive the refresh token ({})",
        refresh.claims.exp
    );
    assert!(issuer.redeem_refresh(&refresh.token, false).await.is_err());
}

#[tokio::test]
async fn a_refresh_reads_the_account_again() {
    let issuer = issuer();
    let users = MemoryUsers::new().unwrap();
    users
        .insert(
            NewUser::new("alice", "pw")
                .spaces(["default_space", "production"])
                .roles(["admin", "operator"]),
        )
        .unwrap();
    let users = Arc::new(users);
    let flow = LoginFlow::new(users.clone(), issuer.clone());
    let alice = users.find("alice").await.unwrap().unwrap();
    let refresh = issuer
        .issue_pair(&alice, PairLifetimes::new())
        .unwrap()
        .refresh
        .unwrap()
        .token;
    // A role and a space removed: the renewed token carries what the
    // account has now, not what the refresh token recorded.
    users
        .insert(
            NewUser::new("alice", "pw")
                .spaces(["default_space"])
                .roles(["operator"]),
        )
        .unwrap();
    let renewed = flow
        .refresh(&refresh, RefreshOptions::keeping())
        .await
        .unwrap();
    assert_eq!(renewed.access.claims.roles, ["operator"]);
    assert_eq!(renewed.access.claims.spaces, ["default_space"]);
    // Past its end of activity: nothing renews.
    users
        .insert(NewUser::new("alice", "pw").active_until(now_seconds() - 1))
        .unwrap();
    assert_eq!(
        flow.refresh(&refresh, RefreshOptions::keeping())
            .await
            .map(|_| ()),
        Err(LoginError::AccountInactive)
    );
    // Removed: nothing renews.
    assert!(users.remove("alice"));
    assert_eq!(
        flow.refresh(&refresh, RefreshOptions::keeping())
            .await
            .map(|_| ()),
        Err(LoginError::InvalidToken(TokenError::Revoked))
    );
}

#[tokio::test]
async fn an_account_with_an_end_gets_no_token_that_outlives_it() {
    let issuer = issuer();
    let users = MemoryUsers::new().unwrap();
    let end = now_seconds() + 100;
    users
        .insert(NewUser::new("temp", "pw").active_until(end))
        .unwrap();
    let flow = LoginFlow::new(Arc::new(users), issuer.clone());
    let LoginOutcome::Authenticated(temp) = flow
        .password("temp", "pw", None, PairLifetimes::new())
        .await
        .unwrap()
    else {
        panic!("no TOTP for this account")
    };
    let pair = issuer.issue_pair(&temp, PairLifetimes::new()).unwrap();
    assert!(pair.access.claims.exp <= end);
    assert!(pair.refresh.unwrap().claims.exp <= end);
    assert!(issuer.issue_access(&temp, 86_400).unwrap().claims.exp <= end);
}

#[tokio::test]
async fn a_full_hashing_queue_refuses_logins_at_once_with_busy() {
    use tower_authgate::login::HashingPool;
    // One thread, nothing may wait: while one login verifies, another is
    // refused rather than queued.
    let users = MemoryUsers::new()
        .unwrap()
        .with_hashing_pool(HashingPool::new(1, 0));
    users.insert(NewUser::new("a", "pw")).unwrap();
    let users = Arc::new(users);
    let (first, second) = tokio::join!(
        users.authenticate("a", "pw"),
        users.authenticate("ghost", "pw")
    );
    let outcomes = [first.map(|_| ()), second.map(|_| ())];
    assert!(
        outcomes.contains(&Err(LoginError::Busy)),
        "one of two logins at once is refused: {outcomes:?}"
    );
    assert_eq!(
        LoginError::Busy.status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(LoginError::Busy.retry_after(), Some(1));
}

/// The payload of a compact JWT, as JSON.
fn payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn minted_tokens_carry_the_scopes_as_one_space_separated_scope_claim() {
    let issuer = issuer();
    let auditor = tower_authgate::login::Principal::builder("1", "auditor")
        .roles(["admin"])
        .scopes(["audit:read", "projects:write", "", "two words"])
        .build();
    assert_eq!(auditor.scopes, ["audit:read", "projects:write"]);
    let pair = issuer.issue_pair(&auditor, PairLifetimes::new()).unwrap();
    assert_eq!(
        payload(&pair.access.token)["scope"],
        "audit:read projects:write"
    );
    assert_eq!(
        pair.access.claims.scopes().collect::<Vec<_>>(),
        ["audit:read", "projects:write"]
    );
    let access = issuer.issue_access(&auditor, 60).unwrap();
    assert_eq!(payload(&access.token)["scope"], "audit:read projects:write");
    // No scopes: no claim at all, not an empty string.
    let plain = tower_authgate::login::Principal::new("2", "plain");
    let pair = issuer.issue_pair(&plain, PairLifetimes::new()).unwrap();
    assert!(payload(&pair.access.token).get("scope").is_none());
}

#[tokio::test]
async fn a_refresh_reads_the_scopes_again() {
    let issuer = issuer();
    let users = MemoryUsers::new().unwrap();
    users
        .insert(NewUser::new("alice", "pw").scopes(["audit:read", "projects:write"]))
        .unwrap();
    let users = Arc::new(users);
    let flow = LoginFlow::new(users.clone(), issuer.clone());
    let alice = users.find("alice").await.unwrap().unwrap();
    let pair = issuer.issue_pair(&alice, PairLifetimes::new()).unwrap();
    assert_eq!(pair.access.claims.scope, "audit:read projects:write");
    let refresh = pair.refresh.unwrap().token;
    users
        .insert(NewUser::new("alice", "pw").scopes(["projects:write"]))
        .unwrap();
    let renewed = flow
        .refresh(&refresh, RefreshOptions::keeping())
        .await
        .unwrap();
    assert_eq!(payload(&renewed.access.token)["scope"], "projects:write");
    users.insert(NewUser::new("alice", "pw")).unwrap();
    let renewed = flow
        .refresh(&refresh, RefreshOptions::keeping())
        .await
        .unwrap();
    assert!(payload(&renewed.access.token).get("scope").is_none());
}

#[tokio::test]
async fn a_service_account_never_carries_more_scopes_than_its_creator() {
    let issuer = issuer();
    let users = MemoryUsers::new().unwrap();
    users
        .insert(
            NewUser::new("root", "pw")
                .roles(["admin"])
                .scopes(["audit:read", "projects:write"]),
        )
        .unwrap();
    let root = users.find("root").await.unwrap().unwrap();
    let accounts = ServiceAccounts::default();
    // By default: the creator's scopes.
    let (all, token) = accounts
        .create(issuer.as_ref(), &root, "ci", 3600)
        .await
        .unwrap();
    assert_eq!(all.scopes, ["audit:read", "projects:write"]);
    assert_eq!(payload(&token)["scope"], "audit:read projects:write");
    // Narrowed to a subset.
    let (narrow, token) = accounts
        .create_with_scopes(issuer.as_ref(), &root, "audit export", 3600, ["audit:read"])
        .await
        .unwrap();
    assert_eq!(narrow.scopes, ["audit:read"]);
    assert_eq!(payload(&token)["scope"], "audit:read");
    let claims = issuer
        .verify(&token, &[TokenKind::ServiceAccount])
        .await
        .unwrap();
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["audit:read"]);
    // A scope the creator lacks: refused, nothing minted or recorded.
    let before = accounts.list().await.unwrap().len();
    assert!(matches!(
        accounts
            .create_with_scopes(
                issuer.as_ref(),
                &root,
                "escalate",
                3600,
                ["audit:read", "admin:all"]
            )
            .await,
        Err(LoginError::Forbidden(_))
    ));
    assert_eq!(accounts.list().await.unwrap().len(), before);
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_token_of_the_subject_and_no_later_one() {
    let (issuer, clock) = clocked_issuer();
    let users = users();
    let flow = LoginFlow::new(users.clone(), issuer.clone());
    let admin = users.find("admin").await.unwrap().unwrap();
    let operator = users.find("operator").await.unwrap().unwrap();
    // Two login sessions, a long access token and a service account.
    let first = issuer.issue_pair(&admin, PairLifetimes::new()).unwrap();
    let second = issuer
        .issue_pair(&admin, PairLifetimes::new().with_refresh(30 * 86_400))
        .unwrap();
    let access = issuer.issue_access(&admin, 86_400).unwrap();
    let (_, service) = ServiceAccounts::default()
        .create(issuer.as_ref(), &admin, "ci", 3600)
        .await
        .unwrap();
    let others = issuer.issue_pair(&operator, PairLifetimes::new()).unwrap();

    clock.advance(5);
    let cut_off = flow.sign_out_everywhere(&admin.username).await.unwrap();
    assert_eq!(cut_off, tower_authgate::clock::Clock::now(clock.as_ref()));
    let revoked = Err(LoginError::InvalidToken(TokenError::Revoked));
    for refresh in [&first.refresh, &second.refresh] {
        let token = &refresh.as_ref().unwrap().token;
        for options in [RefreshOptions::keeping(), RefreshOptions::rotating()] {
            assert_eq!(flow.refresh(token, options).await.map(|_| ()), revoked);
        }
    }
    for token in [&first.access.token, &access.token, &service] {
        assert_eq!(
            issuer.verify(token, &TokenKind::ALL).await.map(|_| ()),
            revoked
        );
    }
    // The guard side sees the same store.
    let store = issuer.revocations();
    let claims = &second.access.claims;
    assert!(match store.check_subject(&claims.sub, claims.iat) {
        RevocationCheck::Ready(answer) => answer.unwrap(),
        RevocationCheck::Pending(future) => future.await.unwrap(),
    });
    // Another subject is untouched.
    assert!(
        flow.refresh(&others.refresh.unwrap().token, RefreshOptions::keeping())
            .await
            .is_ok()
    );
    // A sign-in after the cut-off works, refresh included.
    clock.advance(1);
    let later = issuer.issue_pair(&admin, PairLifetimes::new()).unwrap();
    assert!(
        issuer
            .verify(&later.access.token, &[TokenKind::Access])
            .await
            .is_ok()
    );
    assert!(
        flow.refresh(&later.refresh.unwrap().token, RefreshOptions::rotating())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn signing_out_everywhere_lasts_as_long_as_the_longest_token_it_covers() {
    let store = Arc::new(RecordingRevocations::default());
    let issuer = JwtIssuer::new(signing_key(Algorithm::EdDSA), "test")
        .unwrap()
        .with_revocation_store(store.clone());
    // No token it mints outlives that.
    let admin = users().find("admin").await.unwrap().unwrap();
    let pair = issuer
        .issue_pair(
            &admin,
            PairLifetimes::new().with_refresh(2 * tower_authgate::login::MAX_SERVICE_ACCOUNT_TTL),
        )
        .unwrap();
    let refresh = pair.refresh.unwrap().claims;
    assert_eq!(
        refresh.exp - refresh.iat,
        tower_authgate::login::MAX_SERVICE_ACCOUNT_TTL
    );
    let cut_off = issuer.revoke_subject("admin").await.unwrap();
    let untils = store.untils.lock().unwrap().clone();
    assert_eq!(
        untils,
        [(
            "admin".to_owned(),
            cut_off + tower_authgate::login::MAX_SERVICE_ACCOUNT_TTL
        )]
    );
}
