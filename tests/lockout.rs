//! Lockout policy and store with a fixed clock, concurrency and bounds;
//! lockout wired into the login flow.
#![cfg(feature = "login")]

mod common;

use std::sync::Arc;

use common::*;
use tower_authgate::clock::ManualClock;
use tower_authgate::lockout::{Lockout, LockoutPolicy};
use tower_authgate::login::{
    JwtIssuer, LoginError, LoginFlow, LoginOutcome, MemoryUsers, NewUser, PairLifetimes,
};
use tower_authgate::otp::TotpVerifier;
use tower_authgate::store::{LockoutStore, MemoryLockoutStore};
use tower_authgate::token::Algorithm;

const OPERATOR_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn flow(clock: Arc<ManualClock>, policy: LockoutPolicy) -> LoginFlow {
    let users = MemoryUsers::new().unwrap();
    users.insert(NewUser::new("admin", "admin")).unwrap();
    users
        .insert(
            NewUser::new("operator", "operator")
                .totp_base32(OPERATOR_SECRET)
                .unwrap(),
        )
        .unwrap();
    let issuer = JwtIssuer::new(signing_key(Algorithm::EdDSA), "t").unwrap();
    LoginFlow::new(Arc::new(users), Arc::new(issuer))
        .with_lockout(Lockout::new(policy).with_clock(clock))
}

#[tokio::test]
async fn exactly_five_failures_lock_and_the_sixth_right_password_is_refused() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let flow = flow(clock.clone(), LockoutPolicy::default());
    for _ in 0..4 {
        assert_eq!(
            flow.password("admin", "x", None, PairLifetimes::new())
                .await,
            Err(LoginError::InvalidCredentials)
        );
    }
    // Four failures: the right password still works and resets the count.
    assert!(matches!(
        flow.password("admin", "admin", None, PairLifetimes::new())
            .await,
        Ok(LoginOutcome::Authenticated(_))
    ));
    for _ in 0..5 {
        assert_eq!(
            flow.password("admin", "x", None, PairLifetimes::new())
                .await,
            Err(LoginError::InvalidCredentials)
        );
    }
    assert_eq!(
        flow.password("Admin", "admin", None, PairLifetimes::new())
            .await,
        Err(LoginError::Locked { retry_after: 600 })
    );
    clock.advance(599);
    assert_eq!(
        flow.password("admin", "admin", None, PairLifetimes::new())
            .await,
        Err(LoginError::Locked { retry_after: 1 })
    );
    clock.advance(1);
    assert!(matches!(
        flow.password("admin", "admin", None, PairLifetimes::new())
            .await,
        Ok(LoginOutcome::Authenticated(_))
    ));
    // Unknown accounts lock the same way, so answers never tell them apart.
    for _ in 0..5 {
        assert_eq!(
            flow.password("ghost", "x", None, PairLifetimes::new())
                .await,
            Err(LoginError::InvalidCredentials)
        );
    }
    assert_eq!(
        flow.password("ghost", "x", None, PairLifetimes::new())
            .await,
        Err(LoginError::Locked { retry_after: 600 })
    );
}

#[tokio::test]
async fn policy_is_configurable_and_can_count_per_address() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let policy = LockoutPolicy::default()
        .with_max_failures(2)
        .with_lock_seconds(30)
        .with_window_seconds(60)
        .with_per_address(true);
    let flow = flow(clock.clone(), policy);
    let a = Some("198.51.100.1".parse().unwrap());
    let b = Some("198.51.100.2".parse().unwrap());
    for _ in 0..2 {
        let _ = flow.password("admin", "x", a, PairLifetimes::new()).await;
    }
    assert_eq!(
        flow.password("admin", "admin", a, PairLifetimes::new())
            .await,
        Err(LoginError::Locked { retry_after: 30 })
    );
    assert!(
        flow.password("admin", "admin", b, PairLifetimes::new())
            .await
            .is_ok()
    );
    // Failures outside the window do not add up.
    let _ = flow.password("admin", "x", b, PairLifetimes::new()).await;
    clock.advance(61);
    let _ = flow.password("admin", "x", b, PairLifetimes::new()).await;
    assert!(
        flow.password("admin", "admin", b, PairLifetimes::new())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn totp_failures_count_toward_the_lockout() {
    let clock = Arc::new(ManualClock::new(tower_authgate::clock::now_seconds()));
    let flow = flow(clock.clone(), LockoutPolicy::default());
    let pending = |flow: &LoginFlow| {
        let flow = flow.clone();
        async move {
            match flow
                .password("operator", "operator", None, PairLifetimes::new())
                .await
                .unwrap()
            {
                LoginOutcome::TotpRequired(p) => p.token,
                other => panic!("{other:?}"),
            }
        }
    };
    for _ in 0..5 {
        let token = pending(&flow).await;
        assert_eq!(
            flow.totp(&token, "000000", None).await,
            Err(LoginError::InvalidOtp)
        );
    }
    // The password step is refused now, and so is a pending token's code.
    assert!(matches!(
        flow.password("operator", "operator", None, PairLifetimes::new())
            .await,
        Err(LoginError::Locked { .. })
    ));
    clock.advance(600);
    let token = pending(&flow).await;
    let secret = totp_rs::Secret::Encoded(OPERATOR_SECRET.into())
        .to_bytes()
        .unwrap();
    let code = TotpVerifier::default()
        .generate(&secret, tower_authgate::clock::now_seconds())
        .unwrap();
    assert!(flow.totp(&token, &code, None).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_failures_lose_no_count_and_lock_once() {
    let store = Arc::new(MemoryLockoutStore::default());
    let policy = LockoutPolicy::default();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut newly_locked = 0;
                for _ in 0..125 {
                    let r = store
                        .record_failure("victim", &policy, 5_000)
                        .await
                        .unwrap();
                    newly_locked += usize::from(r.newly_locked);
                }
                newly_locked
            })
        })
        .collect();
    let mut locks = 0;
    for task in tasks {
        locks += task.await.unwrap();
    }
    assert_eq!(locks, 1, "locked exactly once");
    let locked = store.list_locked(5_000).await.unwrap();
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].failures, 1000, "no failure lost");
}

#[tokio::test]
async fn spraying_many_usernames_stays_within_the_bound() {
    let store = MemoryLockoutStore::with_capacity(10_000);
    let policy = LockoutPolicy::default();
    // Real locks are kept while the spray goes on.
    for _ in 0..5 {
        store.record_failure_now("victim", &policy, 1_000).unwrap();
    }
    for i in 0..100_000u64 {
        store
            .record_failure_now(&format!("user{i}"), &policy, 1_000 + i / 1_000)
            .unwrap();
        assert!(store.len() <= 10_000 + 16, "{} at {i}", store.len());
    }
    assert!(store.len() <= 10_000 + 16);
    assert!(store.locked_until_now("victim", 1_050).unwrap().is_some());
}

#[tokio::test]
async fn provisioning_uri() {
    let secret = totp_rs::Secret::Encoded(OPERATOR_SECRET.into())
        .to_bytes()
        .unwrap();
    let uri =
        TotpVerifier::default().provisioning_uri(&secret, "ACME Corp", "operator@example.com");
    assert_eq!(
        uri,
        "otpauth://totp/ACME%20Corp:operator%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=ACME%20Corp&algorithm=SHA1&digits=6&period=30"
    );
}
