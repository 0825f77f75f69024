//! Throttles on what can be called without an account (issue 27, M3 and
//! M4): visitor tokens and login attempts per address, and failed logins
//! per login. Each refusal is a 429 with `Retry-After`.
//!
//! Kept in memory, per node: a restart forgets them, which costs an
//! attacker a restart's worth of attempts, not the accounts.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use witness_schemas::TenantId;

use crate::ApiError;

/// A token bucket per key: `capacity` at once, refilled evenly over `per`.
#[derive(Debug)]
pub struct RateLimit<K> {
    capacity: f64,
    per: Duration,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Keys kept before the full buckets are forgotten.
const TIDY_AT: usize = 100_000;

impl<K: Hash + Eq + Clone> RateLimit<K> {
    pub fn new(capacity: u32, per: Duration) -> Self {
        Self { capacity: f64::from(capacity.max(1)), per, buckets: Mutex::default() }
    }

    /// `key`'s tokens now, refilled since they were last counted.
    fn level(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let refill = now.duration_since(at).as_secs_f64() / self.per.as_secs_f64() * self.capacity;
        (tokens + refill).min(self.capacity)
    }

    /// Seconds until `key` has a token again.
    fn wait(&self, tokens: f64) -> u64 {
        ((1.0 - tokens) / self.capacity * self.per.as_secs_f64()).ceil().max(1.0) as u64
    }

    /// Takes a token from `key`'s bucket, or says in how many seconds one
    /// will be there.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limit");
        if buckets.len() >= TIDY_AT {
            buckets.retain(|_, b| self.level(*b, now) < self.capacity);
        }
        let bucket = buckets.entry(key.clone()).or_insert((self.capacity, now));
        let tokens = self.level(*bucket, now);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return Err(self.wait(tokens));
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }

    /// Whether `key` has a token, without taking it.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        let buckets = self.buckets.lock().expect("rate limit");
        match buckets.get(key).map(|b| self.level(*b, Instant::now())) {
            Some(tokens) if tokens < 1.0 => Err(self.wait(tokens)),
            _ => Ok(()),
        }
    }

    /// Fills `key`'s bucket again (a successful login clears its failures).
    pub fn forget(&self, key: &K) {
        self.buckets.lock().expect("rate limit").remove(key);
    }
}

/// The throttles of one server.
#[derive(Debug)]
pub struct Throttles {
    /// Visitor tokens per address.
    pub visitors: RateLimit<IpAddr>,
    /// Login attempts per address, right or wrong.
    pub logins: RateLimit<IpAddr>,
    /// Failed logins per tenant and login.
    pub login_failures: RateLimit<(TenantId, String)>,
    /// Passwords checked (argon2) since the start: every login attempt
    /// that passes the throttles costs one, whether its login exists or not.
    pub password_checks: std::sync::atomic::AtomicU64,
}

/// How the throttles are set.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Visitor tokens one address may take a minute.
    pub visitors_per_minute: u32,
    /// Login attempts one address may make a minute.
    pub logins_per_minute: u32,
    /// Failed logins one login may have in 15 minutes before it must wait.
    pub login_failures: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { visitors_per_minute: 60, logins_per_minute: 30, login_failures: 10 }
    }
}

impl Throttles {
    pub fn new(config: ThrottleConfig) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            visitors: RateLimit::new(config.visitors_per_minute, minute),
            logins: RateLimit::new(config.logins_per_minute, minute),
            login_failures: RateLimit::new(config.login_failures, Duration::from_secs(15 * 60)),
            password_checks: Default::default(),
        }
    }
}

impl Default for Throttles {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

/// What a throttle limits, for its 429.
#[derive(Debug, Clone, Copy)]
pub enum Limited {
    Logins,
    LoginFailures,
    Visitors,
}

/// The 429 for a throttle that says "wait `seconds`".
pub fn refuse(what: Limited, seconds: u64) -> ApiError {
    let refusal = match what {
        Limited::Logins => refusal!(
            "too_many_logins",
            "too many login attempts from this address; try again in {seconds} s",
            seconds = seconds
        ),
        Limited::LoginFailures => refusal!(
            "too_many_failures",
            "too many failed logins for this login; try again in {seconds} s",
            seconds = seconds
        ),
        Limited::Visitors => {
            refusal!(
                "too_many_visitors",
                "too many visitors from this address; try again in {seconds} s",
                seconds = seconds
            )
        }
    };
    ApiError::too_many(refusal, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_refills_and_is_per_key() {
        let limit = RateLimit::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limit.take(&1).is_ok());
        }
        let wait = limit.take(&1).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(limit.check(&1).is_err());
        assert!(limit.take(&2).is_ok(), "another key has its own bucket");
        limit.forget(&1);
        assert!(limit.take(&1).is_ok());
        let fast = RateLimit::new(1, Duration::from_millis(20));
        assert!(fast.take(&1).is_ok() && fast.take(&1).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(fast.take(&1).is_ok(), "refilled");
    }
}
