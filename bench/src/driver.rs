//! The load driver: pushes pre-built requests through `SubmitTransactions` streams, one
//! per connection, and measures every answer.
//!
//! Transaction `i` goes to connection `i mod C`, so every connection works through the
//! run in the same order. Each connection has two tasks: a *sender* that feeds the
//! request stream, and a *receiver* that reads answers, matches them by `request_id`,
//! and records latency. They share only a table of send times (atomics), and, in closed
//! loop, a semaphore of `window` permits that the sender takes and the receiver gives
//! back.
//!
//! - **Closed loop**: at most `window` transactions in flight per connection; measures
//!   the most the cluster can take at that concurrency.
//! - **Open loop**: transaction `i` is due at `start + i / rate`, whatever the answers.
//!   Latency is taken from the *due* time, not from when the sender got round to it, so
//!   a driver (or a cluster) that falls behind shows up in the figures instead of
//!   hiding (no coordinated omission); falling behind by more than [`LAG_WARNING`] is
//!   also warned about.
//!
//! Answers that arrive during the warm-up are checked but left out of the latency
//! histogram and the throughput.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cbdc_core::TxId;
use cbdc_proto::v1;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::answers::Answer;
use crate::error::BenchError;
use crate::wire::{self, EncodedRequest};

/// Requests buffered between a sender and its HTTP/2 stream.
const REQUEST_BUFFER: usize = 1024;
/// An open loop this far behind its schedule is warned about.
pub const LAG_WARNING: Duration = Duration::from_millis(100);
/// Longest latency the histograms hold exactly (larger ones are recorded as this).
const MAX_LATENCY_US: u64 = 600_000_000;
/// Significant figures of the run's latency histogram (0.1 % resolution).
const RUN_SIGFIGS: u8 = 3;
/// Significant figures of the per-second histograms (1 %: there is one per second per
/// connection, so they must stay small).
const SECOND_SIGFIGS: u8 = 2;
/// How often the progress bar is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// How load is offered (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadMode {
    /// This many transactions in flight per connection.
    Closed {
        /// Transactions in flight per connection.
        window: usize,
    },
    /// This many transactions per second in total.
    Open {
        /// Transactions per second over all connections.
        rate: f64,
    },
}

/// How a run is driven.
#[derive(Clone, Debug)]
pub struct DriveConfig {
    /// Closed or open loop.
    pub mode: LoadMode,
    /// Answers before this are left out of the figures.
    pub warmup: Duration,
    /// Sending stops at `warmup + duration` (none: when every transaction is sent).
    pub duration: Option<Duration>,
    /// Longest wait for an answer once sending has stopped, or with nothing answered
    /// while transactions are in flight.
    pub drain_timeout: Duration,
    /// Show a progress bar on stderr (only if it is a terminal).
    pub progress: bool,
}

/// When transaction `index` is due in an open loop at `rate` per second: `index / rate`
/// after the start. Every connection follows the one global schedule, so their sends
/// interleave evenly.
pub fn schedule_offset(index: u64, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(index as f64 / rate).unwrap_or(Duration::MAX)
}

/// Throughput and latency of one second of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start at the beginning of this interval.
    pub start_s: f64,
    /// Length of the interval (1 s, less for the last).
    pub length_s: f64,
    /// Answers per second in the interval.
    pub tx_per_s: f64,
    /// Median latency of those answers, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// Whether the interval began during the warm-up.
    pub warmup: bool,
}

/// Latency percentiles of the measured answers, microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Answers measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// The percentiles of `hist` (all zero when it is empty).
    pub fn from_histogram(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        Latency {
            count: hist.len(),
            p50_us: hist.value_at_quantile(0.50),
            p90_us: hist.value_at_quantile(0.90),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
            mean_us: hist.mean(),
        }
    }
}

/// What a drive produced, before checking.
#[derive(Debug)]
pub struct DriveOutcome {
    /// The answer to every transaction, by index.
    pub answers: Vec<Answer>,
    /// Latency of the answers after the warm-up, microseconds.
    pub latency: Histogram<u64>,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// Answers after the warm-up.
    pub measured: u64,
    /// From the end of the warm-up to the last answer.
    pub measured_s: f64,
    /// From the start to the last answer.
    pub elapsed_s: f64,
    /// How far an open loop fell behind its schedule at worst.
    pub max_lag: Duration,
    /// Things the operator should know (fell behind, streams broke, ran out…).
    pub warnings: Vec<String>,
}

/// A new histogram for latencies in microseconds.
fn histogram(sigfigs: u8) -> Histogram<u64> {
    // Only constants reach here, and hdrhistogram accepts them (1 ≤ low, 2·low ≤ high,
    // sigfigs ≤ 5); the unit tests build every histogram this crate uses.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfigs)
        .expect("constant histogram bounds are valid")
}

/// The shared clock of a run.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
    warmup_end: Instant,
    send_deadline: Option<Instant>,
}

/// Answers received in one second on one connection.
struct Second {
    count: u64,
    latency: Histogram<u64>,
}

/// What one connection produced.
struct ConnectionOutcome {
    answers: Vec<Answer>,
    latency: Histogram<u64>,
    seconds: Vec<Second>,
    measured: u64,
    last_answer: Option<Duration>,
    max_lag: Duration,
    error: Option<String>,
    sent: u64,
    planned: usize,
}

/// What a sender reports.
struct SendOutcome {
    sent: u64,
    max_lag: Duration,
}

/// Drives `requests` (whose `request_id`s are their indices, naming `ids`) over
/// `channels`, one `SubmitTransactions` stream each.
pub async fn drive(
    channels: Vec<(String, Channel)>,
    requests: Vec<EncodedRequest>,
    ids: Arc<[TxId]>,
    config: DriveConfig,
) -> Result<DriveOutcome, BenchError> {
    let connections = channels.len();
    if connections == 0 {
        return Err(BenchError::Options("no connection to drive".into()));
    }
    let total = requests.len();
    let mut per_connection: Vec<Vec<EncodedRequest>> = (0..connections)
        .map(|_| Vec::with_capacity(total / connections + 1))
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        per_connection[i % connections].push(request);
    }

    let progress = Arc::new(AtomicU64::new(0));
    let lag_us = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(&config, total as u64);
    let (ticker_stop, ticker) = spawn_ticker(bar.clone(), progress.clone(), lag_us.clone());

    let start = Instant::now();
    let clock = Clock {
        start,
        warmup_end: start + config.warmup,
        send_deadline: config.duration.map(|d| start + config.warmup + d),
    };
    let config = Arc::new(config);
    let mut tasks = Vec::with_capacity(connections);
    for (c, ((endpoint, channel), requests)) in channels.into_iter().zip(per_connection).enumerate()
    {
        let connection = Connection {
            index: c,
            count: connections,
            endpoint,
            channel,
            ids: ids.clone(),
            clock,
            config: config.clone(),
            progress: progress.clone(),
            lag_us: lag_us.clone(),
        };
        tasks.push(tokio::spawn(connection.run(requests)));
    }
    let mut outcomes = Vec::with_capacity(connections);
    for task in tasks {
        outcomes.push(task.await?);
    }
    let _ = ticker_stop.send(true);
    let _ = ticker.await;
    bar.finish_and_clear();
    Ok(merge(outcomes, clock, &config, total))
}

fn progress_bar(config: &DriveConfig, total: u64) -> ProgressBar {
    if !config.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} tx  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Refreshes the progress bar from the shared counters until told to stop.
fn spawn_ticker(
    bar: ProgressBar,
    progress: Arc<AtomicU64>,
    lag_us: Arc<AtomicU64>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        if bar.is_hidden() {
            return;
        }
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut last = (Instant::now(), 0u64);
        let mut rate = 0.0f64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
            }
            let now = Instant::now();
            let position = progress.load(Ordering::Relaxed);
            let elapsed = now.saturating_duration_since(last.0).as_secs_f64();
            if elapsed > 0.0 {
                // Smoothed over about a second, so that the figure can be read.
                let current = position.saturating_sub(last.1) as f64 / elapsed;
                rate = if rate == 0.0 {
                    current
                } else {
                    0.8 * rate + 0.2 * current
                };
            }
            last = (now, position);
            bar.set_position(position);
            let mut message = format!("{} tx/s", crate::report::group(rate.round() as u64));
            let lag = lag_us.load(Ordering::Relaxed);
            if lag >= LAG_WARNING.as_micros() as u64 {
                message.push_str(&format!("  behind schedule by up to {} ms", lag / 1000));
            }
            bar.set_message(message);
        }
    });
    (stop, task)
}

/// One connection's share of the run.
struct Connection {
    index: usize,
    count: usize,
    endpoint: String,
    channel: Channel,
    ids: Arc<[TxId]>,
    clock: Clock,
    config: Arc<DriveConfig>,
    progress: Arc<AtomicU64>,
    lag_us: Arc<AtomicU64>,
}

/// Time since `start` as stored in the send-time table: nanoseconds plus one, so that 0
/// means "not sent".
fn stamp(at: Instant, start: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(start).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

impl Connection {
    fn global(&self, local: usize) -> u64 {
        (local * self.count + self.index) as u64
    }

    async fn run(self, requests: Vec<EncodedRequest>) -> ConnectionOutcome {
        let planned = requests.len();
        let sent_at: Arc<[AtomicU64]> = (0..planned).map(|_| AtomicU64::new(0)).collect();
        let window = match self.config.mode {
            LoadMode::Closed { window } => Some(Arc::new(Semaphore::new(window))),
            LoadMode::Open { .. } => None,
        };
        let (stream_tx, stream_rx) = mpsc::channel(REQUEST_BUFFER);
        let (done_tx, mut done_rx) = watch::channel::<Option<u64>>(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let sent_counter = Arc::new(AtomicU64::new(0));
        let last_send = Arc::new(AtomicU64::new(0));

        let sender = tokio::spawn(send(SendJob {
            requests,
            stream: stream_tx,
            sent_at: sent_at.clone(),
            window: window.clone(),
            stop: stop_rx,
            done: done_tx,
            sent_counter: sent_counter.clone(),
            last_send: last_send.clone(),
            clock: self.clock,
            mode: self.config.mode,
            connection: self.index,
            connections: self.count,
            lag_us: self.lag_us.clone(),
        }));

        let mut outcome = ConnectionOutcome {
            answers: vec![Answer::Unsent; planned],
            latency: histogram(RUN_SIGFIGS),
            seconds: Vec::new(),
            measured: 0,
            last_answer: None,
            max_lag: Duration::ZERO,
            error: None,
            sent: 0,
            planned,
        };

        match wire::submit_transactions(self.channel.clone(), ReceiverStream::new(stream_rx)).await
        {
            Err(status) => {
                outcome.error = Some(format!(
                    "SubmitTransactions on {} failed: {status}",
                    self.endpoint
                ));
            }
            Ok(mut stream) => {
                let mut answered = 0u64;
                let mut sent_total: Option<u64> = None;
                // Neither an answer nor a send for `drain_timeout` while transactions are
                // in flight ends the connection's run: the cluster has stalled.
                let mut last_progress = Instant::now();
                let quiet_until = |last_progress: Instant| {
                    let sent = Duration::from_nanos(last_send.load(Ordering::Acquire));
                    last_progress.max(self.clock.start + sent) + self.config.drain_timeout
                };
                loop {
                    if sent_total.is_some_and(|total| answered >= total) {
                        break;
                    }
                    tokio::select! {
                        message = stream.message() => match message {
                            Ok(Some(response)) => {
                                if self.record(&mut outcome, &sent_at, window.as_deref(), response) {
                                    answered += 1;
                                }
                                last_progress = Instant::now();
                            }
                            Ok(None) => break,
                            Err(status) => {
                                outcome.error = Some(format!(
                                    "the SubmitTransactions stream to {} broke: {status}",
                                    self.endpoint
                                ));
                                break;
                            }
                        },
                        changed = done_rx.changed(), if sent_total.is_none() => {
                            let done = match changed {
                                Ok(()) => *done_rx.borrow(),
                                // The sender is gone without a word: take what it counted.
                                Err(_) => Some(sent_counter.load(Ordering::Acquire)),
                            };
                            if let Some(total) = done {
                                sent_total = Some(total);
                                last_progress = Instant::now();
                            }
                        }
                        _ = tokio::time::sleep_until(quiet_until(last_progress)), if in_flight(answered, &sent_counter, sent_total) => {
                            // A send while this slept moves the deadline on.
                            if Instant::now() < quiet_until(last_progress) {
                                continue;
                            }
                            outcome.error = Some(format!(
                                "no answer from {} for {:?} with transactions in flight",
                                self.endpoint, self.config.drain_timeout
                            ));
                            break;
                        }
                    }
                }
            }
        }
        // Stop the sender wherever it is, and release it if it waits for a permit.
        let _ = stop_tx.send(true);
        if let Some(window) = &window {
            window.close();
        }
        match sender.await {
            Ok(send) => {
                outcome.sent = send.sent;
                outcome.max_lag = send.max_lag;
            }
            Err(e) => {
                outcome.sent = sent_counter.load(Ordering::Acquire);
                outcome
                    .error
                    .get_or_insert(format!("sender task failed: {e}"));
            }
        }
        // Sent (a stamp in the table) but unanswered.
        for (answer, at) in outcome.answers.iter_mut().zip(sent_at.iter()) {
            if *answer == Answer::Unsent && at.load(Ordering::Acquire) != 0 {
                *answer = Answer::Unanswered;
            }
        }
        outcome
    }

    /// Records one answer; returns whether it answered a transaction of this
    /// connection for the first time.
    fn record(
        &self,
        outcome: &mut ConnectionOutcome,
        sent_at: &[AtomicU64],
        window: Option<&Semaphore>,
        response: v1::SubmitTransactionsResponse,
    ) -> bool {
        let now = Instant::now();
        let id = response.request_id;
        let count = self.count as u64;
        let local = if id % count == self.index as u64 {
            usize::try_from(id / count).ok()
        } else {
            None
        };
        let Some(local) = local.filter(|&l| l < outcome.answers.len()) else {
            tracing::warn!(request_id = id, endpoint = %self.endpoint, "answer to a request never sent here");
            return false;
        };
        let sent = sent_at[local].load(Ordering::Acquire);
        if sent == 0 || outcome.answers[local] != Answer::Unsent {
            tracing::warn!(request_id = id, endpoint = %self.endpoint, "unexpected or repeated answer");
            return false;
        }
        let global = self.global(local) as usize;
        let Some(expected) = self.ids.get(global) else {
            return false;
        };
        outcome.answers[local] = Answer::from_result(response.result.as_ref(), expected);
        if let Some(window) = window {
            window.add_permits(1);
        }
        self.progress.fetch_add(1, Ordering::Relaxed);

        let since_start = now.saturating_duration_since(self.clock.start);
        let sent_offset = Duration::from_nanos(sent - 1);
        let latency_us = u64::try_from(since_start.saturating_sub(sent_offset).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if now >= self.clock.warmup_end {
            outcome.latency.saturating_record(latency_us);
            outcome.measured += 1;
        }
        let second = usize::try_from(since_start.as_secs()).unwrap_or(usize::MAX);
        if second < usize::MAX && outcome.seconds.len() <= second {
            outcome.seconds.resize_with(second + 1, || Second {
                count: 0,
                latency: histogram(SECOND_SIGFIGS),
            });
        }
        if let Some(bin) = outcome.seconds.get_mut(second) {
            bin.count += 1;
            bin.latency.saturating_record(latency_us);
        }
        outcome.last_answer = Some(since_start);
        true
    }
}

/// Whether a connection has transactions in flight (or may still send some).
fn in_flight(answered: u64, sent_counter: &AtomicU64, sent_total: Option<u64>) -> bool {
    match sent_total {
        Some(total) => answered < total,
        None => answered < sent_counter.load(Ordering::Acquire),
    }
}

/// Everything a sender needs.
struct SendJob {
    requests: Vec<EncodedRequest>,
    stream: mpsc::Sender<EncodedRequest>,
    sent_at: Arc<[AtomicU64]>,
    window: Option<Arc<Semaphore>>,
    stop: watch::Receiver<bool>,
    done: watch::Sender<Option<u64>>,
    sent_counter: Arc<AtomicU64>,
    /// When the last request was handed to the stream (nanoseconds since the start).
    last_send: Arc<AtomicU64>,
    clock: Clock,
    mode: LoadMode,
    connection: usize,
    connections: usize,
    lag_us: Arc<AtomicU64>,
}

/// Feeds one connection's request stream until its requests run out, the duration is
/// over, or it is told to stop; then tells the receiver how many it sent.
async fn send(mut job: SendJob) -> SendOutcome {
    let mut sent = 0u64;
    let mut max_lag = Duration::ZERO;
    let deadline = job.clock.send_deadline;
    let far = job.clock.start + Duration::from_secs(86_400 * 365);
    let requests = std::mem::take(&mut job.requests);
    for (local, request) in requests.into_iter().enumerate() {
        if *job.stop.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let stamp_at = match job.mode {
            LoadMode::Closed { .. } => {
                let Some(window) = &job.window else { break };
                let permit = tokio::select! {
                    permit = window.acquire() => permit,
                    _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => break,
                    _ = job.stop.wait_for(|s| *s) => break,
                };
                match permit {
                    // Given back by the receiver with `add_permits` when the answer comes.
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                Instant::now()
            }
            LoadMode::Open { rate } => {
                let global = (local * job.connections + job.connection) as u64;
                let due = job.clock.start + schedule_offset(global, rate);
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = job.stop.wait_for(|s| *s) => break,
                    }
                } else {
                    let lag = now - due;
                    max_lag = max_lag.max(lag);
                    let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
                    let worst = job.lag_us.fetch_max(lag_us, Ordering::Relaxed);
                    // Warn when the lag first passes the threshold and each time it
                    // doubles: a handful of lines however long the run.
                    if lag > LAG_WARNING && lag_us >= worst.saturating_mul(2) {
                        tracing::warn!(
                            lag_ms = lag.as_millis() as u64,
                            "open loop is behind its schedule: the rate is more than \
                             this driver or the cluster keeps up with"
                        );
                    }
                }
                due
            }
        };
        job.sent_at[local].store(stamp(stamp_at, job.clock.start), Ordering::Release);
        let delivered = tokio::select! {
            result = job.stream.send(request) => result.is_ok(),
            _ = job.stop.wait_for(|s| *s) => false,
        };
        if !delivered {
            job.sent_at[local].store(0, Ordering::Release);
            break;
        }
        sent += 1;
        job.sent_counter.store(sent, Ordering::Release);
        job.last_send
            .store(stamp(Instant::now(), job.clock.start), Ordering::Release);
    }
    let _ = job.done.send(Some(sent));
    SendOutcome { sent, max_lag }
}

/// Puts the connections' outcomes together.
fn merge(
    outcomes: Vec<ConnectionOutcome>,
    clock: Clock,
    config: &DriveConfig,
    total: usize,
) -> DriveOutcome {
    let connections = outcomes.len();
    let mut answers = vec![Answer::Unsent; total];
    let mut latency = histogram(RUN_SIGFIGS);
    let mut seconds: Vec<Second> = Vec::new();
    let mut measured = 0;
    let mut last_answer = Duration::ZERO;
    let mut max_lag = Duration::ZERO;
    let mut warnings = Vec::new();
    let mut sent = 0;
    let mut planned = 0;
    for (c, outcome) in outcomes.into_iter().enumerate() {
        for (local, answer) in outcome.answers.into_iter().enumerate() {
            if let Some(slot) = answers.get_mut(local * connections + c) {
                *slot = answer;
            }
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = latency.add(&outcome.latency);
        for (s, second) in outcome.seconds.into_iter().enumerate() {
            if seconds.len() <= s {
                seconds.resize_with(s + 1, || Second {
                    count: 0,
                    latency: histogram(SECOND_SIGFIGS),
                });
            }
            seconds[s].count += second.count;
            let _ = seconds[s].latency.add(&second.latency);
        }
        measured += outcome.measured;
        if let Some(last) = outcome.last_answer {
            last_answer = last_answer.max(last);
        }
        max_lag = max_lag.max(outcome.max_lag);
        if let Some(error) = outcome.error {
            warnings.push(format!("connection {c}: {error}"));
        }
        sent += outcome.sent;
        planned += outcome.planned as u64;
    }

    let warmup = config.warmup.as_secs_f64();
    let elapsed_s = last_answer.as_secs_f64();
    let measured_s = (elapsed_s - warmup).max(0.0);
    let timeline = seconds
        .iter()
        .enumerate()
        .map(|(s, second)| {
            let start_s = s as f64;
            let length_s = (elapsed_s - start_s).clamp(1e-3, 1.0);
            let p = |q| {
                if second.latency.is_empty() {
                    0
                } else {
                    second.latency.value_at_quantile(q)
                }
            };
            TimelinePoint {
                start_s,
                length_s,
                tx_per_s: second.count as f64 / length_s,
                p50_us: p(0.5),
                p99_us: p(0.99),
                warmup: start_s < warmup,
            }
        })
        .collect();

    if max_lag > LAG_WARNING {
        warnings.push(format!(
            "the open loop fell behind its schedule by up to {} ms: the offered rate was \
             not fully sent on time (latencies count from the scheduled time)",
            max_lag.as_millis()
        ));
    }
    if sent < planned {
        if clock.send_deadline.is_some() {
            tracing::debug!(
                sent,
                planned,
                "duration over before every transaction was sent"
            );
        } else {
            warnings.push(format!("only {sent} of {planned} transactions were sent"));
        }
    } else if let Some(duration) = config.duration {
        if config.warmup + duration > last_answer {
            warnings.push(format!(
                "all {planned} transactions were answered {:.1} s into a run meant to last \
                 {:.1} s: raise --transactions for a run of the full duration",
                elapsed_s,
                (config.warmup + duration).as_secs_f64()
            ));
        }
    }
    if measured == 0 && sent > 0 {
        warnings.push(
            "no answer came after the warm-up: nothing was measured (shorten --warmup or \
             send more transactions)"
                .into(),
        );
    }
    DriveOutcome {
        answers,
        latency,
        timeline,
        measured,
        measured_s,
        elapsed_s,
        max_lag,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_schedule_offset_spreads_evenly() {
        assert_eq!(schedule_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(schedule_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(schedule_offset(2500, 1000.0), Duration::from_millis(2500));
        assert_eq!(schedule_offset(3, 4.0), Duration::from_millis(750));
        // A rate that makes no sense sends everything at once instead of panicking.
        assert_eq!(schedule_offset(5, 0.0), Duration::ZERO);
        assert_eq!(schedule_offset(5, f64::NAN), Duration::ZERO);
        assert_eq!(schedule_offset(u64::MAX, 1e-300), Duration::MAX);
    }

    #[test]
    fn test_schedule_interleaves_connections() {
        // Connection c sends global indices c, c + C, c + 2C…: together they follow the
        // one schedule, each at rate / C.
        let rate = 100.0;
        let connections = 4usize;
        let mut times: Vec<Duration> = (0..connections)
            .flat_map(|c| (0..5).map(move |local| (local * connections + c) as u64))
            .map(|global| schedule_offset(global, rate))
            .collect();
        times.sort();
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(10));
        }
        // Per connection, one every 40 ms.
        assert_eq!(
            schedule_offset(4 + 1, rate) - schedule_offset(1, rate),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn test_stamp_reserves_zero_for_unsent() {
        let start = Instant::now();
        assert_eq!(stamp(start, start), 1);
        assert_eq!(stamp(start + Duration::from_micros(5), start), 5_001);
        // Before the start (never happens) saturates instead of wrapping.
        assert_eq!(stamp(start, start + Duration::from_secs(1)), 1);
    }

    #[test]
    fn test_latency_percentiles() {
        let mut h = histogram(RUN_SIGFIGS);
        for v in 1..=1000u64 {
            h.saturating_record(v * 1000);
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 1000);
        // 3 significant figures: within 0.1 %.
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 1e-3;
        assert!(near(l.p50_us, 500_000), "{l:?}");
        assert!(near(l.p90_us, 900_000), "{l:?}");
        assert!(near(l.p99_us, 990_000), "{l:?}");
        assert!(near(l.p999_us, 999_000), "{l:?}");
        assert!(near(l.max_us, 1_000_000), "{l:?}");
        assert_eq!(
            Latency::from_histogram(&histogram(RUN_SIGFIGS)),
            Latency::default()
        );
    }

    #[test]
    fn test_histogram_saturates_huge_latency() {
        let mut h = histogram(SECOND_SIGFIGS);
        h.saturating_record(u64::MAX);
        assert!(h.max() >= MAX_LATENCY_US);
    }
}
