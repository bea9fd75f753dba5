//! What a run counted, and the report made of it (printed and JSON).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::netstring::Status;

/// Latencies are recorded in nanoseconds, up to this (one minute), 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// Counters of one connection task (merged at the end: no shared state while running).
pub struct Stats {
    /// From the (scheduled, in the open loop) send time to the reply.
    pub latency_ns: Histogram<u64>,
    /// From the actual write to the reply: the same as `latency_ns` in the closed loop;
    /// in the open loop the difference is time the generator sent late.
    pub service_ns: Histogram<u64>,
    pub replies: [u64; Status::ALL.len()],
    pub malformed: u64,
    pub connection_errors: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            latency_ns: histogram(),
            service_ns: histogram(),
            replies: [0; Status::ALL.len()],
            malformed: 0,
            connection_errors: 0,
        }
    }

    /// One reply received in the measured window.
    pub fn reply(&mut self, status: Status, latency_ns: u64, service_ns: u64) {
        self.replies[status.index()] += 1;
        self.latency_ns.saturating_record(latency_ns.max(1));
        self.service_ns.saturating_record(service_ns.max(1));
    }

    pub fn merge(&mut self, other: &Stats) {
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms share their bounds");
        self.service_ns
            .add(&other.service_ns)
            .expect("histograms share their bounds");
        for (a, b) in self.replies.iter_mut().zip(other.replies) {
            *a += b;
        }
        self.malformed += other.malformed;
        self.connection_errors += other.connection_errors;
    }
}

/// The settings a report was made with (echoed in the JSON).
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub target: String,
    pub map: String,
    pub connections: usize,
    pub threads: usize,
    /// Requests per second for the open loop; `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub keys: usize,
    pub order: crate::keys::Order,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    fn text(&self) -> String {
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            self.p50, self.p90, self.p99, self.p99_9, self.max, self.mean
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Replies {
    #[serde(rename = "OK")]
    pub ok: u64,
    #[serde(rename = "NOTFOUND")]
    pub notfound: u64,
    #[serde(rename = "TEMP")]
    pub temp: u64,
    #[serde(rename = "TIMEOUT")]
    pub timeout: u64,
    #[serde(rename = "PERM")]
    pub perm: u64,
}

/// The `--prime` pass: every key asked for once before the warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct Prime {
    pub seconds: f64,
    /// Well-formed replies.
    pub requests: u64,
    pub ok: u64,
    /// Malformed replies and connection errors.
    pub errors: u64,
    pub rate_rps: f64,
}

/// What a process has used so far: CPU time, and how often one of its threads went
/// to sleep (voluntary context switches: waiting in epoll, on a lock). On a VM a
/// sleeping vCPU halts, and waking it costs tens of µs: sleeps per second explain
/// much of a closed loop's latency tail (docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu: std::time::Duration,
    pub sleeps: u64,
}

impl Usage {
    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            sleeps: self.sleeps.saturating_sub(earlier.sleeps),
        }
    }
}

/// This process's usage so far (user + system CPU, all threads).
pub fn own_usage() -> Usage {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Usage::default();
    }
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        sleeps: u64::try_from(usage.ru_nvcsw).unwrap_or(0),
    }
}

/// Another process's usage so far (Linux: /proc/PID/stat for the CPU time of all
/// its threads, /proc/PID/task/*/status for their sleeps), if readable.
pub fn process_usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its ')'.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    // /proc/PID/status counts the main thread only; the sleeps are per thread.
    let sleeps = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .filter_map(|status| voluntary_switches(&status))
        .sum();
    Some(Usage {
        cpu: std::time::Duration::from_secs_f64((utime + stime) as f64 / ticks as f64),
        sleeps,
    })
}

/// `voluntary_ctxt_switches` of a /proc/.../status text.
fn voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: RunConfig,
    /// Well-formed replies in the measured window.
    pub requests: u64,
    /// `requests` over the measured duration.
    pub throughput_rps: f64,
    pub replies: Replies,
    pub malformed: u64,
    pub connection_errors: u64,
    /// The generator's own CPU use in the measured window, in percent of one core:
    /// near 100 × --threads it is (or is close to being) the bottleneck.
    pub generator_cpu_percent: f64,
    /// The generator's threads went to sleep this often per second ([`Usage`]).
    pub generator_sleeps_per_s: f64,
    /// With --server-pid: the server's CPU use in the measured window, in percent of
    /// one core (clock-tick resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    /// With --server-pid: how often per second the server's threads went to sleep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_sleeps_per_s: Option<f64>,
    /// Microseconds; open loop: from the intended send time (no coordinated omission).
    pub latency_us: Latency,
    /// Open loop only: microseconds from the actual write (what a closed-loop client
    /// would see; lower than `latency_us` when the generator or server fell behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_us: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prime: Option<Prime>,
}

impl Report {
    /// `used`: the generator's usage during the `measured_s` seconds; `server_used`,
    /// the server's.
    pub fn new(
        config: RunConfig,
        stats: &Stats,
        measured_s: f64,
        used: Usage,
        server_used: Option<Usage>,
    ) -> Report {
        let per_s = |x: f64| {
            if measured_s > 0.0 {
                x / measured_s
            } else {
                0.0
            }
        };
        let percent = |u: Usage| 100.0 * per_s(u.cpu.as_secs_f64());
        let sleeps = |u: Usage| per_s(u.sleeps as f64);
        let r = stats.replies;
        let open_loop = config.rate.is_some();
        let requests: u64 = r.iter().sum();
        Report {
            config,
            requests,
            throughput_rps: if measured_s > 0.0 {
                requests as f64 / measured_s
            } else {
                0.0
            },
            replies: Replies {
                ok: r[Status::Ok.index()],
                notfound: r[Status::NotFound.index()],
                temp: r[Status::Temp.index()],
                timeout: r[Status::Timeout.index()],
                perm: r[Status::Perm.index()],
            },
            malformed: stats.malformed,
            connection_errors: stats.connection_errors,
            generator_cpu_percent: percent(used),
            generator_sleeps_per_s: sleeps(used),
            server_cpu_percent: server_used.map(percent),
            server_sleeps_per_s: server_used.map(sleeps),
            latency_us: Latency::of(&stats.latency_ns),
            service_us: open_loop.then(|| Latency::of(&stats.service_ns)),
            prime: None,
        }
    }

    /// The human-readable form.
    pub fn text(&self) -> String {
        let c = &self.config;
        let r = &self.replies;
        let mode = match c.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        let prime = self
            .prime
            .as_ref()
            .map(|p| {
                format!(
                    "prime        every key once: {:.2} s, {:.0} req/s, OK {} of {}, errors {}\n",
                    p.seconds, p.rate_rps, p.ok, p.requests, p.errors
                )
            })
            .unwrap_or_default();
        format!(
            "{prime}target       {target} (map {map}), {conns} connections, {threads} thread(s), {mode}\n\
             keys         {keys} ({order:?}), warm-up {warmup} s, measured {duration} s\n\
             throughput   {tput:.0} req/s ({requests} replies)\n\
             replies      OK {ok}  NOTFOUND {nf}  TEMP {temp}  TIMEOUT {to}  PERM {perm}\n\
             errors       malformed {malformed}  connection {conn_err}\n\
             cpu          generator {cpu:.0} %{server} of one core\n\
             sleeps/s     generator {gsleeps:.0}{ssleeps}\n\
             latency µs   {latency}\n{service}",
            target = c.target,
            map = c.map,
            conns = c.connections,
            threads = c.threads,
            keys = c.keys,
            order = c.order,
            warmup = c.warmup_s,
            duration = c.duration_s,
            tput = self.throughput_rps,
            requests = self.requests,
            ok = r.ok,
            nf = r.notfound,
            temp = r.temp,
            to = r.timeout,
            perm = r.perm,
            malformed = self.malformed,
            conn_err = self.connection_errors,
            cpu = self.generator_cpu_percent,
            server = self
                .server_cpu_percent
                .map(|s| format!(", server {s:.0} %"))
                .unwrap_or_default(),
            gsleeps = self.generator_sleeps_per_s,
            ssleeps = self
                .server_sleeps_per_s
                .map(|s| format!(", server {s:.0}"))
                .unwrap_or_default(),
            latency = self.latency_us.text(),
            service = self
                .service_us
                .as_ref()
                .map(|s| format!("service µs   {} (from the actual write)\n", s.text()))
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voluntary_switches_are_read_from_a_status_text() {
        let status =
            "Name:\tmtastsd\nvoluntary_ctxt_switches:\t3585\nnonvoluntary_ctxt_switches:\t468\n";
        assert_eq!(voluntary_switches(status), Some(3585));
        assert_eq!(voluntary_switches("Name:\tx\n"), None);
    }

    /// This process sleeps when it waits, and the count of another process (itself,
    /// read through /proc) sees its threads.
    #[test]
    fn sleeps_are_counted_for_this_process_and_through_proc() {
        let before = own_usage();
        let through_proc = process_usage(std::process::id()).expect("/proc is readable");
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let after = own_usage();
        assert!(after.since(before).sleeps >= 3, "{before:?} → {after:?}");
        let later = process_usage(std::process::id()).expect("/proc is readable");
        assert!(later.since(through_proc).sleeps >= 3);
    }
}
