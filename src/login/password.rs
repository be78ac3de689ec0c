//! How strong a new password is, judged before an account is created (the
//! Scailable / Nx API's `POST /authenticate/password-strength`).
//!
//! The judgement is `zxcvbn`'s (Dropbox's estimator: dictionaries, common
//! passwords, keyboard patterns, dates, l33t substitutions, and the user's
//! own name and email), scored 0 to 4, plus length limits.

/// What the policy thinks of a password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordStrength {
    /// Whether the password may be used.
    pub strong: bool,
    /// `zxcvbn`'s score, 0 (guessed at once) to 4 (very unguessable); 0 for
    /// a password outside the length limits.
    pub score: u8,
    /// Why it is weak and what would help, or that it is fine.
    pub message: String,
}

/// The rules a new password must meet: a length within limits and a
/// `zxcvbn` score at least the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordPolicy {
    /// The fewest characters (default 8).
    pub min_len: usize,
    /// The most characters (default 128): longer ones are refused before
    /// they are judged or hashed.
    pub max_len: usize,
    /// The lowest acceptable score (default 3, "safely unguessable").
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_len: 8,
            max_len: 128,
            min_score: 3,
        }
    }
}

impl PasswordPolicy {
    /// With this minimum length.
    pub fn with_min_len(mut self, min_len: usize) -> Self {
        self.min_len = min_len;
        self
    }

    /// With this maximum length.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// With this minimum score (0 to 4).
    pub fn with_min_score(mut self, min_score: u8) -> Self {
        self.min_score = min_score.min(4);
        self
    }

    /// Judges `password`; `user_inputs` (the name, the email) count against
    /// it when it contains them.
    pub fn judge(&self, password: &str, user_inputs: &[&str]) -> PasswordStrength {
        let len = password.chars().count();
        if len < self.min_len || len > self.max_len {
            return PasswordStrength {
                strong: false,
                score: 0,
                message: format!(
                    "a password has {} to {} characters",
                    self.min_len, self.max_len
                ),
            };
        }
        let estimate = zxcvbn::zxcvbn(password, user_inputs);
        let score: u8 = estimate.score().into();
        let strong = score >= self.min_score;
        let message = match estimate.feedback() {
            _ if strong => "the password is strong enough".to_owned(),
            Some(feedback) => {
                let mut parts: Vec<String> = feedback
                    .warning()
                    .map(|w| w.to_string())
                    .into_iter()
                    .collect();
                parts.extend(feedback.suggestions().iter().map(|s| s.to_string()));
                if parts.is_empty() {
                    "the password is too easy to guess".to_owned()
                } else {
                    parts.join(" ")
                }
            }
            None => "the password is too easy to guess".to_owned(),
        };
        PasswordStrength {
            strong,
            score,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_and_the_users_own_details_are_weak() {
        let policy = PasswordPolicy::default();
        assert!(!policy.judge("password1", &[]).strong);
        assert!(
            !policy
                .judge("admin@example.com1", &["admin@example.com"])
                .strong
        );
        assert!(!policy.judge("short", &[]).strong);
        assert!(!policy.judge(&"a".repeat(129), &[]).strong);
        let good = policy.judge("correct horse battery staple", &[]);
        assert!(good.strong, "{good:?}");
        assert_eq!(good.score, 4);
    }
}
