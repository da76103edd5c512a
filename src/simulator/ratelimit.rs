//! Okta's per-bucket rate limits and the org-wide concurrency limit
//! (docs/okta-behaviour.md, Rate limits, R2–R4).
//!
//! A bucket's window opens with its first request and lasts `window`; it is
//! not aligned to the clock, so `Reset` can be any second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::lock;
use super::rules::epoch_secs_ceil;

/// The rate-limit families the tool's calls fall into (docs/okta-behaviour.md, R3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// `GET /api/v1/users/{idOrLogin}`.
    GetUser,
    /// `GET|POST /api/v1/users` and everything under `/users/{id}/factors`.
    Users,
    /// `POST|PUT|DELETE /api/v1/users/{id}`.
    UserWrite,
    /// Any other `/api/v1` path.
    Other,
}

impl Bucket {
    fn index(self) -> usize {
        match self {
            Bucket::GetUser => 0,
            Bucket::Users => 1,
            Bucket::UserWrite => 2,
            Bucket::Other => 3,
        }
    }
}

/// What the `X-Rate-Limit-*` headers of one response say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// UTC epoch seconds.
    pub reset: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    opened: Option<(Instant, SystemTime)>,
    used: u32,
}

pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    buckets: Mutex<[Window; 4]>,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            buckets: Mutex::new([Window::default(); 4]),
        }
    }

    /// Takes one slot. `Err` carries the headers of the 429.
    pub(crate) fn take(&self, bucket: Bucket) -> Result<RateHeaders, RateHeaders> {
        let mono = Instant::now();
        let wall = SystemTime::now();
        let mut buckets = lock(&self.buckets);
        let w = &mut buckets[bucket.index()];
        let expired = w
            .opened
            .is_none_or(|(at, _)| mono.saturating_duration_since(at) >= self.window);
        if expired {
            *w = Window {
                opened: Some((mono, wall)),
                used: 0,
            };
        }
        let opened_wall = w.opened.map_or(wall, |(_, t)| t);
        // Rounded up: a client that waits until `Reset` must find a fresh
        // window, even when the window is shorter than a second.
        let reset = epoch_secs_ceil(opened_wall + self.window);
        if w.used < self.limit {
            w.used += 1;
            Ok(RateHeaders {
                limit: self.limit,
                remaining: self.limit - w.used,
                reset,
            })
        } else {
            Err(RateHeaders {
                limit: self.limit,
                remaining: 0,
                reset,
            })
        }
    }
}

/// Counts requests in flight, org-wide.
pub(crate) struct Concurrency {
    max: usize,
    in_flight: AtomicUsize,
}

/// Holds one in-flight slot until dropped.
pub(crate) struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Concurrency {
    pub(crate) fn new(max: usize) -> Concurrency {
        Concurrency {
            max,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A slot, or `None` when `max` requests are already in flight.
    pub(crate) fn try_enter(&self) -> Option<Slot<'_>> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.in_flight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_slot_succeeds_with_zero_remaining_then_429() {
        let rl = RateLimiter::new(2, Duration::from_secs(60));
        let a = rl.take(Bucket::Users).unwrap();
        assert_eq!((a.limit, a.remaining), (2, 1));
        let b = rl.take(Bucket::Users).unwrap();
        assert_eq!(b.remaining, 0);
        let c = rl.take(Bucket::Users).unwrap_err();
        assert_eq!((c.limit, c.remaining, c.reset), (2, 0, a.reset));
        // Other buckets are untouched.
        assert_eq!(rl.take(Bucket::GetUser).unwrap().remaining, 1);
    }

    #[test]
    fn window_reopens_and_sub_second_reset_is_rounded_up() {
        let rl = RateLimiter::new(1, Duration::from_millis(100));
        let a = rl.take(Bucket::Other).unwrap();
        assert!(a.reset >= epoch_secs_ceil(SystemTime::now()));
        assert!(rl.take(Bucket::Other).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(rl.take(Bucket::Other).is_ok());
    }

    #[test]
    fn concurrency_slots_are_returned_on_drop() {
        let c = Concurrency::new(1);
        let s = c.try_enter();
        assert!(s.is_some());
        assert!(c.try_enter().is_none());
        drop(s);
        assert!(c.try_enter().is_some());
    }
}
