//! Pacing: how fast the tool may talk to Okta.
//!
//! Okta's limits are per org and per bucket, and shared with every other
//! client of the org, so the tool keeps within a share of each bucket as the
//! `X-Rate-Limit-*` headers describe it, pauses every worker until the reset
//! when a 429 arrives, and lowers its in-flight count when Okta says too many
//! requests are running at once. An absolute `--rate` cap is a governor
//! limiter on top.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Okta's rate-limit buckets that the tool's requests fall into
/// (docs/okta-behaviour.md, R3): the factor calls share the `/api/v1/users` bucket
/// with listing users; getting one user by id or login has its own, and so
/// do writes to `/api/v1/users/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `GET /api/v1/users/{idOrLogin}`.
    UserGet,
    /// `GET /api/v1/users` and every `/api/v1/users/{id}/factors*` call.
    Users,
    /// `POST /api/v1/users/{id}`.
    UserWrite,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::UserGet, Bucket::Users, Bucket::UserWrite];

    fn index(self) -> usize {
        match self {
            Bucket::UserGet => 0,
            Bucket::Users => 1,
            Bucket::UserWrite => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bucket::UserGet => "GET /api/v1/users/{id}",
            Bucket::Users => "/api/v1/users",
            Bucket::UserWrite => "POST /api/v1/users/{id}",
        }
    }
}

/// What one response said about its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// How long until the window resets, by the server's own clock
    /// (`X-Rate-Limit-Reset` minus the `Date` header), so local clock skew
    /// does not matter.
    pub reset_in: Duration,
    /// `X-Rate-Limit-Reset` and `Date` as read, in epoch seconds, for the
    /// pacer's finer estimate of the server's clock.
    pub reset_epoch: u64,
    pub date_epoch: Option<u64>,
}

impl RateHeaders {
    /// Reads the headers; `None` when any is missing or malformed (a
    /// comma-joined duplicate reset value counts as malformed).
    pub fn parse(headers: &reqwest::header::HeaderMap) -> Option<RateHeaders> {
        use crate::okta::wire::{X_RATE_LIMIT_LIMIT, X_RATE_LIMIT_REMAINING, X_RATE_LIMIT_RESET};
        let num = |name: &str| -> Option<u64> {
            headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
        };
        let limit = u32::try_from(num(X_RATE_LIMIT_LIMIT)?).ok()?;
        let remaining = u32::try_from(num(X_RATE_LIMIT_REMAINING)?).ok()?;
        let reset_epoch = num(X_RATE_LIMIT_RESET)?;
        let date_epoch = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let server_secs = date_epoch.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        // `Date` has whole seconds and is truncated, so `reset - date` is
        // never shorter than the true wait.
        let reset_in = Duration::from_secs(reset_epoch.saturating_sub(server_secs));
        Some(RateHeaders {
            limit,
            remaining,
            reset_in,
            reset_epoch,
            date_epoch,
        })
    }

    /// Okta signals a concurrency (in-flight) limit with limit and
    /// remaining both 0 (docs/okta-behaviour.md, R4).
    pub fn is_concurrency_limit(&self) -> bool {
        self.limit == 0 && self.remaining == 0
    }
}

#[derive(Debug, Default)]
struct BucketState {
    limit: Option<u32>,
    remaining: u32,
    reset_at: Option<Instant>,
    paused_until: Option<Instant>,
    /// Earliest moment the next request of this bucket may leave.
    next_slot: Option<Instant>,
    /// When the request that met the 429 may retry: it goes alone, ahead
    /// of every other request held by the pause, and opens the new window.
    probe_at: Option<Instant>,
    probe_taken: bool,
    in_flight: u32,
    /// Requests this window that were paced against the learned limit.
    sent: u64,
    /// The newest window a success answer showed: its `X-Rate-Limit-Reset`,
    /// when its first answer arrived here (no earlier than the window
    /// opened), and the shortest gap between two windows' `Reset` values
    /// (never shorter than a window).
    reset_epoch: u64,
    window_seen_at: Option<Instant>,
    window_secs: Option<u64>,
}

/// The server's clock as seen from here, finer than `Date`'s whole
/// seconds: each answer stamped `Date: d` and received at local time `x`
/// shows that the server's clock minus the local one is at least `d - x`
/// (the server wrote `d` before we received it, and its clock was at `d`
/// or later). The largest such bound over the last minute or so is a
/// conservative estimate that tightens as answers cross the server's
/// second boundaries, removing most of the half second that truncated
/// `Date` values cost on average. Older bounds are dropped so that slow
/// drift between the two clocks cannot make it optimistic.
#[derive(Debug)]
struct ServerClock {
    base: Instant,
    current: Option<f64>,
    previous: Option<f64>,
    rotated: Instant,
}

impl ServerClock {
    fn new() -> ServerClock {
        let now = Instant::now();
        ServerClock {
            base: now,
            current: None,
            previous: None,
            rotated: now,
        }
    }

    fn calibrate(&mut self, date_epoch: u64, received: Instant) {
        if self.rotated.elapsed() > Duration::from_secs(30) {
            self.previous = self.current.take();
            self.rotated = Instant::now();
        }
        let x = received.duration_since(self.base).as_secs_f64();
        let bound = date_epoch as f64 - x;
        self.current = Some(self.current.map_or(bound, |c| c.max(bound)));
    }

    /// When the server's clock reaches `epoch`, at the latest.
    fn local_at(&self, epoch: u64) -> Option<Instant> {
        let offset = match (self.current, self.previous) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        let x = (epoch as f64 - offset).max(0.0);
        Some(self.base + Duration::from_secs_f64(x))
    }
}

/// Shared by all workers of a run.
pub struct Pacer {
    share: f64,
    cap: Option<DefaultDirectRateLimiter>,
    buckets: [Mutex<BucketState>; 3],
    learned: Notify,
    concurrency: AdaptiveConcurrency,
    requests: AtomicU64,
    throttled: AtomicU64,
    clock: Mutex<ServerClock>,
}

/// Held while a request is in flight.
pub struct Ticket<'a> {
    pacer: &'a Pacer,
    bucket: Bucket,
    _permit: ConcurrencyPermit<'a>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut st = self.pacer.state(self.bucket);
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.pacer.learned.notify_waiters();
    }
}

/// A short human description of why requests are waiting, for progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaceStatus {
    pub waiting: Option<Duration>,
    pub limit: Option<u32>,
    pub concurrency: usize,
}

const RESET_MARGIN: Duration = Duration::from_millis(250);
/// How long the retry of a throttled request has the bucket to itself
/// before the other held requests follow.
const PROBE_LEAD: Duration = Duration::from_millis(500);

impl Pacer {
    /// `share` is the fraction of each bucket the run may use (0 < share ≤ 1);
    /// `rate_per_minute` an absolute cap; `concurrency` the most requests in
    /// flight at once.
    pub fn new(share: f64, rate_per_minute: Option<NonZeroU32>, concurrency: usize) -> Pacer {
        let cap = rate_per_minute.map(|rpm| {
            // One request at a time at the cap's pace; no bursts.
            RateLimiter::direct(Quota::per_minute(rpm).allow_burst(NonZeroU32::MIN))
        });
        Pacer {
            share: share.clamp(0.01, 1.0),
            cap,
            buckets: Default::default(),
            learned: Notify::new(),
            concurrency: AdaptiveConcurrency::new(concurrency.max(1)),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            clock: Mutex::new(ServerClock::new()),
        }
    }

    /// When a response's window resets, as a local instant, by the
    /// server's clock.
    fn reset_at(&self, h: &RateHeaders, now: Instant) -> Instant {
        let coarse = now + h.reset_in;
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(date) = h.date_epoch {
            clock.calibrate(date, now);
        }
        match (h.date_epoch, clock.local_at(h.reset_epoch)) {
            (Some(_), Some(fine)) => fine.min(coarse),
            _ => coarse,
        }
    }

    fn state(&self, bucket: Bucket) -> std::sync::MutexGuard<'_, BucketState> {
        // A poisoned lock only means another worker panicked mid-update of
        // plain numbers; the numbers are still usable.
        self.buckets[bucket.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request to `bucket` may leave, then counts it in flight.
    pub async fn acquire(&self, bucket: Bucket) -> Ticket<'_> {
        // Sit out a pause without holding an in-flight permit, so the
        // throttled request's retry can always get one when its turn comes.
        for _ in 0..1_000 {
            let hold = {
                let now = Instant::now();
                let st = self.state(bucket);
                let probe_open = st.probe_at.is_some_and(|p| p <= now) && !st.probe_taken;
                st.paused_until
                    .filter(|u| *u > now && !probe_open)
                    .map(|u| u - now)
            };
            match hold {
                Some(d) => tokio::time::sleep(d).await,
                None => break,
            }
        }
        let permit = self.concurrency.acquire().await;
        loop {
            let wait = {
                let now = Instant::now();
                let mut st = self.state(bucket);
                match self.decide(&mut st, now) {
                    Decision::Go => {
                        st.in_flight += 1;
                        st.sent += 1;
                        None
                    }
                    Decision::Wait(d) => Some(Some(d)),
                    Decision::AwaitHeaders => Some(None),
                }
            };
            match wait {
                None => break,
                Some(Some(d)) => tokio::time::sleep(d).await,
                Some(None) => {
                    // The first request of a bucket is out: learn its limit
                    // before sending more (start gently).
                    let notified = self.learned.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                }
            }
        }
        if let Some(cap) = &self.cap {
            cap.until_ready().await;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ticket {
            pacer: self,
            bucket,
            _permit: permit,
        }
    }

    fn decide(&self, st: &mut BucketState, now: Instant) -> Decision {
        if let Some(until) = st.paused_until {
            if until > now {
                if st.probe_at.is_some_and(|p| p <= now) && !st.probe_taken {
                    // The throttled request's retry: alone, first.
                    st.probe_taken = true;
                    st.next_slot = None;
                    return Decision::Go;
                }
                return Decision::Wait(until - now);
            }
            st.paused_until = None;
            st.probe_at = None;
        }
        let Some(limit) = st.limit else {
            return if st.in_flight == 0 {
                Decision::Go
            } else {
                Decision::AwaitHeaders
            };
        };
        let reset_at = st.reset_at.unwrap_or(now);
        if reset_at <= now {
            // The window we knew about is over; the next response tells us
            // about the new one.
            st.next_slot = None;
            return if st.in_flight == 0 {
                Decision::Go
            } else {
                Decision::AwaitHeaders
            };
        }
        // Leave the rest of the bucket to the org's other clients: our
        // budget is what remains above their reserve, less what we already
        // have in flight (whose answers will lower `remaining`).
        // At least one request a window, however small the share.
        let ours = ((f64::from(limit) * self.share).floor() as u32).max(1);
        let reserve = limit.saturating_sub(ours);
        let budget = st
            .remaining
            .saturating_sub(reserve)
            .saturating_sub(st.in_flight);
        if budget == 0 {
            return Decision::Wait(reset_at - now + RESET_MARGIN);
        }
        // Spread the budget evenly over what is left of the window, so the
        // run never bursts into a 429 whatever the window's length.
        let spacing = (reset_at - now) / budget;
        let slot = st.next_slot.unwrap_or(now);
        if slot > now {
            return Decision::Wait(slot - now);
        }
        // From the slot this request was given, not from when its sleep
        // ended: timer wake-up delays must not add up over a window. After
        // idle time, at most one spacing is made up (no burst).
        let from = slot.max(now.checked_sub(spacing).unwrap_or(now));
        st.next_slot = Some(from + spacing);
        Decision::Go
    }

    /// Records what a response's headers said.
    /// `success`: the answer was a 2xx (only those teach the window's
    /// length; a 429 may carry a reset of its own).
    pub fn observe(&self, bucket: Bucket, headers: RateHeaders, success: bool) {
        if headers.is_concurrency_limit() {
            return;
        }
        let now = Instant::now();
        let mut reset_at = self.reset_at(&headers, now);
        let mut st = self.state(bucket);
        if success && headers.reset_epoch > 0 {
            if headers.reset_epoch > st.reset_epoch {
                let gap = headers.reset_epoch - st.reset_epoch;
                if st.reset_epoch > 0 && (1..=3600).contains(&gap) {
                    st.window_secs = Some(st.window_secs.map_or(gap, |w| w.min(gap)));
                }
                st.reset_epoch = headers.reset_epoch;
                st.window_seen_at = Some(now);
            }
            // The window opened no later than its first answer arrived and
            // lasts no longer than the gap between two windows' resets: a
            // bound free of `Reset`'s rounding to whole seconds.
            if headers.reset_epoch == st.reset_epoch
                && let (Some(seen), Some(secs)) = (st.window_seen_at, st.window_secs)
            {
                reset_at = reset_at.min(seen + Duration::from_secs(secs));
            }
        }
        let new_window = st
            .reset_at
            .is_none_or(|r| reset_at > r + Duration::from_secs(1));
        if new_window || headers.remaining < st.remaining || st.limit != Some(headers.limit) {
            st.remaining = headers.remaining;
        }
        if new_window {
            st.sent = 0;
        }
        st.limit = Some(headers.limit);
        st.reset_at = Some(reset_at);
        drop(st);
        self.learned.notify_waiters();
    }

    #[cfg(test)]
    fn observe_ok(&self, bucket: Bucket, headers: RateHeaders) {
        self.observe(bucket, headers, true)
    }

    /// A 429 for the bucket: every worker waits until the reset; the
    /// caller, which retries after the returned wait, goes first and alone
    /// (the others follow `PROBE_LEAD` later), so nothing else reaches the
    /// bucket between the 429 and its retry.
    pub fn pause_until_reset(&self, bucket: Bucket, headers: Option<RateHeaders>) -> Duration {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let jitter = Duration::from_millis(rand::random_range(0..250));
        let now = Instant::now();
        let until_reset = headers.map_or(Duration::from_secs(5), |h| {
            self.reset_at(&h, now).saturating_duration_since(now)
        });
        let wait = until_reset + RESET_MARGIN + jitter;
        let until = now + wait + PROBE_LEAD;
        let mut st = self.state(bucket);
        st.remaining = 0;
        st.next_slot = None;
        if st.paused_until.is_none_or(|p| p < until) {
            st.paused_until = Some(until);
            st.probe_at = Some(now + wait);
            st.probe_taken = false;
        }
        wait
    }

    /// A concurrency 429: fewer requests in flight, and a short pause.
    pub fn too_many_in_flight(&self) -> Duration {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.concurrency.lower();
        Duration::from_millis(500 + rand::random_range(0..500))
    }

    /// A success: the in-flight limit may creep back up.
    pub fn succeeded(&self) {
        self.concurrency.recover();
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// What the progress line shows.
    pub fn status(&self) -> PaceStatus {
        let now = Instant::now();
        let mut waiting = None;
        let mut limit = None;
        for b in Bucket::ALL {
            let st = self.state(b);
            if let Some(until) = st.paused_until.filter(|u| *u > now) {
                waiting = Some(waiting.map_or(until - now, |w: Duration| w.max(until - now)));
            }
            if b == Bucket::Users {
                limit = st.limit;
            }
        }
        PaceStatus {
            waiting,
            limit,
            concurrency: self.concurrency.current(),
        }
    }
}

enum Decision {
    Go,
    Wait(Duration),
    AwaitHeaders,
}

/// A semaphore whose size can shrink when Okta's concurrency limit is hit
/// and grow back slowly after successes.
struct AdaptiveConcurrency {
    sem: Semaphore,
    max: usize,
    current: AtomicUsize,
    /// Permits to retire as soon as they are returned.
    debt: AtomicUsize,
    successes: AtomicU64,
}

struct ConcurrencyPermit<'a> {
    owner: &'a AdaptiveConcurrency,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for ConcurrencyPermit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let retire = self
                .owner
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok();
            if retire {
                permit.forget();
            }
        }
    }
}

impl AdaptiveConcurrency {
    fn new(max: usize) -> Self {
        AdaptiveConcurrency {
            sem: Semaphore::new(max),
            max,
            current: AtomicUsize::new(max),
            debt: AtomicUsize::new(0),
            successes: AtomicU64::new(0),
        }
    }

    async fn acquire(&self) -> ConcurrencyPermit<'_> {
        // The semaphore is never closed, so acquire cannot fail; if it ever
        // did, running without the permit is still bounded by the workers.
        let permit = self.sem.acquire().await.ok();
        ConcurrencyPermit {
            owner: self,
            permit,
        }
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn lower(&self) {
        let lowered = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 1).then(|| (c * 2 / 3).max(1))
            });
        if let Ok(before) = lowered {
            let after = (before * 2 / 3).max(1);
            let cut = before - after;
            let forgotten = self.sem.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
            self.successes.store(0, Ordering::Relaxed);
        }
    }

    fn recover(&self) {
        let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
        let cur = self.current();
        // Grow by one after a run of successes as long as the current size.
        if cur < self.max && n >= (cur as u64 * 4).max(8) {
            self.successes.store(0, Ordering::Relaxed);
            if self
                .current
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Pay off retirement debt first.
                let paid = self
                    .debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                    .is_ok();
                if !paid {
                    self.sem.add_permits(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(limit: u32, remaining: u32, reset_from_date: u64) -> HeaderMap {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", HeaderValue::from(limit));
        h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from(1_800_000_000 + reset_from_date),
        );
        h.insert(
            "date",
            HeaderValue::from_str(&httpdate::fmt_http_date(date)).unwrap(),
        );
        h
    }

    #[test]
    fn reset_is_measured_against_the_server_date_not_the_local_clock() {
        // The server's Date is years away from the local clock; only the
        // difference between reset and Date counts.
        let h = RateHeaders::parse(&headers(100, 0, 7)).unwrap();
        assert_eq!(h.reset_in, Duration::from_secs(7));
        assert_eq!(h.limit, 100);
        assert!(!h.is_concurrency_limit());
        assert!(
            RateHeaders::parse(&headers(0, 0, 60))
                .unwrap()
                .is_concurrency_limit()
        );
    }

    #[test]
    fn duplicated_reset_header_is_ignored() {
        let mut h = headers(100, 5, 7);
        h.insert("x-rate-limit-reset", HeaderValue::from_static("1,2"));
        assert_eq!(RateHeaders::parse(&h), None);
    }

    #[tokio::test]
    async fn budget_exhausted_by_other_clients_waits_for_the_reset() {
        let pacer = Pacer::new(0.5, None, 4);
        // Limit 100, half reserved for others, and only 40 remain: no budget.
        pacer.observe_ok(
            Bucket::Users,
            RateHeaders {
                limit: 100,
                remaining: 40,
                reset_in: Duration::from_secs(30),
                reset_epoch: 0,
                date_epoch: None,
            },
        );
        let mut st = pacer.state(Bucket::Users);
        match pacer.decide(&mut st, Instant::now()) {
            Decision::Wait(d) => assert!(d >= Duration::from_secs(29), "{d:?}"),
            _ => panic!("expected a wait until the reset"),
        }
    }

    #[tokio::test]
    async fn requests_are_spread_over_the_window() {
        let pacer = Pacer::new(1.0, None, 4);
        pacer.observe_ok(
            Bucket::Users,
            RateHeaders {
                limit: 100,
                remaining: 10,
                reset_in: Duration::from_secs(10),
                reset_epoch: 0,
                date_epoch: None,
            },
        );
        let now = Instant::now();
        let mut st = pacer.state(Bucket::Users);
        assert!(matches!(pacer.decide(&mut st, now), Decision::Go));
        match pacer.decide(&mut st, now) {
            // 10 left over 10 s: about one a second.
            Decision::Wait(d) => {
                assert!(
                    d > Duration::from_millis(900) && d <= Duration::from_secs(1),
                    "{d:?}"
                )
            }
            _ => panic!("second request should wait for its slot"),
        }
    }

    #[test]
    fn the_server_clock_estimate_tightens_but_never_runs_ahead() {
        let mut clock = ServerClock::new();
        let base = clock.base;
        // The server's clock is 1000.3 s ahead of `base`; answers arrive
        // 20 ms after they were stamped, every 100 ms, Date truncated.
        for k in 0..40u64 {
            let x = 0.1 * k as f64 + 0.02;
            let server = 1000.3 + (x - 0.02);
            clock.calibrate(server.floor() as u64, base + Duration::from_secs_f64(x));
        }
        // The server reaches 1010 at local 9.7 s; the estimate is never
        // earlier, and within a tenth of a second after the boundaries seen.
        let at = clock
            .local_at(1010)
            .unwrap()
            .duration_since(base)
            .as_secs_f64();
        assert!((9.7..9.85).contains(&at), "{at}");
    }

    #[tokio::test]
    async fn the_window_end_is_learned_from_consecutive_windows() {
        let pacer = Pacer::new(1.0, None, 4);
        let h = |reset_epoch, reset_in| RateHeaders {
            limit: 100,
            remaining: 90,
            reset_in: Duration::from_secs(reset_in),
            reset_epoch,
            date_epoch: None,
        };
        pacer.observe(Bucket::Users, h(1_000, 11), true);
        // A 429 carrying a far reset teaches nothing about the window.
        pacer.observe(Bucket::Users, h(1_007, 7), false);
        // The next window: Reset 10 s later, though its header says 11 s.
        pacer.observe(Bucket::Users, h(1_010, 11), true);
        let st = pacer.state(Bucket::Users);
        assert_eq!(st.window_secs, Some(10));
        let left = st
            .reset_at
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(10), "{left:?}");
        assert!(left >= Duration::from_millis(9_900), "{left:?}");
    }

    #[tokio::test]
    async fn a_lower_limit_in_the_headers_slows_the_pace_at_once() {
        let pacer = Pacer::new(0.5, None, 4);
        let h = |limit, remaining| RateHeaders {
            limit,
            remaining,
            reset_in: Duration::from_secs(10),
            reset_epoch: 0,
            date_epoch: None,
        };
        pacer.observe_ok(Bucket::Users, h(100, 90));
        let now = Instant::now();
        let mut st = pacer.state(Bucket::Users);
        assert!(matches!(pacer.decide(&mut st, now), Decision::Go));
        // 40 left above the reserve over 10 s: a slot every 250 ms.
        let fast = st.next_slot.unwrap() - now;
        assert!(fast <= Duration::from_millis(260), "{fast:?}");
        drop(st);
        // The org's limit drops to 20: reserve 10, 5 left, 2 s apart.
        pacer.observe_ok(Bucket::Users, h(20, 15));
        let mut st = pacer.state(Bucket::Users);
        st.next_slot = None;
        assert!(matches!(pacer.decide(&mut st, now), Decision::Go));
        let slow = st.next_slot.unwrap() - now;
        assert!(slow >= Duration::from_millis(1900), "{slow:?}");
    }

    #[tokio::test]
    async fn concurrency_limit_lowers_in_flight_and_recovers() {
        let pacer = Pacer::new(1.0, None, 9);
        pacer.too_many_in_flight();
        assert_eq!(pacer.status().concurrency, 6);
        pacer.too_many_in_flight();
        assert_eq!(pacer.status().concurrency, 4);
        for _ in 0..100 {
            pacer.succeeded();
        }
        assert!(pacer.status().concurrency > 4);
    }

    #[tokio::test]
    async fn pause_until_reset_holds_every_request_of_the_bucket() {
        let pacer = Pacer::new(1.0, None, 4);
        let wait = pacer.pause_until_reset(
            Bucket::Users,
            Some(RateHeaders {
                limit: 100,
                remaining: 0,
                reset_in: Duration::from_secs(7),
                reset_epoch: 0,
                date_epoch: None,
            }),
        );
        assert!(wait >= Duration::from_secs(7));
        let mut st = pacer.state(Bucket::Users);
        assert!(
            matches!(pacer.decide(&mut st, Instant::now()), Decision::Wait(d) if d >= Duration::from_secs(6))
        );
        drop(st);
        // Other buckets are not held.
        let mut other = pacer.state(Bucket::UserGet);
        assert!(matches!(
            pacer.decide(&mut other, Instant::now()),
            Decision::Go
        ));
        assert_eq!(pacer.throttled(), 1);
    }

    #[tokio::test]
    async fn the_throttled_request_retries_alone_before_the_others() {
        let pacer = Pacer::new(1.0, None, 4);
        let wait = pacer.pause_until_reset(
            Bucket::Users,
            Some(RateHeaders {
                limit: 100,
                remaining: 0,
                reset_in: Duration::from_secs(2),
                reset_epoch: 0,
                date_epoch: None,
            }),
        );
        let at = Instant::now() + wait;
        let mut st = pacer.state(Bucket::Users);
        // Before its turn nobody goes; at its turn exactly one request goes
        // and the rest stay held a little longer.
        assert!(matches!(
            pacer.decide(&mut st, Instant::now()),
            Decision::Wait(_)
        ));
        assert!(matches!(pacer.decide(&mut st, at), Decision::Go));
        match pacer.decide(&mut st, at) {
            Decision::Wait(d) => assert!(d >= PROBE_LEAD - Duration::from_millis(5), "{d:?}"),
            _ => panic!("a second request went with the probe"),
        }
    }
}
