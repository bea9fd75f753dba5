//! The answer to a request (SPEC 6): which source answers, in the one order that
//! the daemon and `mtastsd query` share, and the daemon's [`Handler`], which turns a
//! request frame into reply bytes.
//!
//! # The precedence ([`answer`])
//!
//! A local override first (SPEC 6.5), then DANE for an MX-resolved domain (SPEC
//! 6.4, decided by [`crate::dane::precedence`]), then MTA-STS (SPEC 6.1, 6.2).
//! [`answer`] is the only place that order is written: `query` exists to say what
//! the daemon answers, so it must not keep a copy that could drift.
//!
//! # Why it is generic over [`Sources`]
//!
//! The two callers reach the sources differently. The daemon reads a cached policy
//! in place, under the cache lock, and writes its reply bytes straight into the
//! connection's buffer: a cache hit allocates nothing (`tests/alloc.rs`) and must
//! stay that way. `query` has already resolved everything from scratch and only
//! needs the reply text. So [`answer`] decides *which* source answers and asks the
//! caller's [`Sources`] for each one only when the order reaches it: a domain with
//! an override never starts a DANE lookup, and a `dane-only` domain never reads the
//! MTA-STS cache. The function itself does no I/O; the daemon's sources are the
//! caches, `query`'s the report it built. Monomorphised, the daemon's cache hit
//! goes through the same code as before the rule had one home.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::BytesMut;

use crate::cache::dane::DaneCache;
use crate::cache::{Cached, Hit, Lookup, PolicyCache};
use crate::config::{Config, Profile, DEFAULT_PROFILE};
use crate::dane::{precedence, Fallback, Precedence, Verdict, DANE, DANE_ONLY};
use crate::overrides::Override;
use crate::postfix::{
    cached_answer, enforced, fits_with_tlsrpt, tlsrpt_tail, SERVERNAME_SUFFIX, TLSRPT_DOMAIN_PREFIX,
};
use crate::socketmap::connection::Respond;
use crate::socketmap::{netstring, normalise, parse_request, Key, Normalised, Reply};

/// What a request was answered with: the reply kind (SPEC 1.3), for the request
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Ok,
    NotFound,
    Temp,
}

impl From<bool> for Answered {
    /// `true` for an `OK`, as the MTA-STS sources return it.
    fn from(ok: bool) -> Answered {
        if ok {
            Answered::Ok
        } else {
            Answered::NotFound
        }
    }
}

/// An answer that is not MTA-STS's own, as [`answer`] hands it to [`Sources::give`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// SPEC 6.5: the domain's local override.
    Override(&'a Override),
    /// SPEC 6.4: DANE on every MX host: `OK dane-only`.
    DaneOnly,
    /// SPEC 6.4: DANE partial or failed and MTA-STS had no `OK`: `OK dane` or
    /// `TEMP`. It replaces the answer [`Sources::mta_sts`] gave.
    Fallback(Fallback<'a>),
}

/// The sources of an answer, as one caller reaches them. [`answer`] calls each at
/// most once, and only when the precedence reaches it.
pub trait Sources {
    /// SPEC 6.4: the DANE verdict for the domain; `None` when the profile does not
    /// ask for DANE.
    fn dane(&mut self) -> impl Future<Output = Option<Verdict>>;
    /// Give the MTA-STS answer (SPEC 6.1, 6.2); `true` when it is an `OK`.
    fn mta_sts(&mut self) -> impl Future<Output = bool>;
    /// Give an answer from another source.
    fn give(&mut self, answer: Answer<'_>);
    /// SPEC 6.4: MTA-STS's `OK` stands although the DANE check was partial or
    /// failed (the daemon logs and counts it).
    fn mta_sts_over_dane(&mut self, _fallback: Fallback<'_>) {}
}

/// SPEC 6.4, 1.6: whether a key gets a DANE check at all: only a domain that Postfix
/// resolves MX hosts for, not a next hop (`[host]`, `host:port`), for which Postfix's
/// `dane` level does no MX resolution either. [`answer`] and `mtastsd query` (which
/// looks the verdict up before it asks [`answer`]) both ask this.
#[inline]
pub fn checks_dane(next_hop: bool) -> bool {
    !next_hop
}

/// SPEC 6.5, 6.4, 6.1, 6.2: answer one domain from `sources`, in precedence order.
/// `overridden` is the domain's override under the profile; `next_hop` is true
/// for a key written `[host]` or `host:port` (SPEC 1.6).
pub async fn answer<S: Sources>(
    overridden: Option<&Override>,
    next_hop: bool,
    sources: &mut S,
) -> Answered {
    // SPEC 6.5: a local override answers before the cache and any lookup.
    if let Some(o) = overridden {
        sources.give(Answer::Override(o));
        return match o {
            Override::NoMtaSts => Answered::NotFound,
            Override::Answer(_) => Answered::Ok,
        };
    }
    let verdict = if checks_dane(next_hop) {
        sources.dane().await
    } else {
        None
    };
    let fallback = match verdict.as_ref().map(precedence) {
        None | Some(Precedence::MtaSts) => return Answered::from(sources.mta_sts().await),
        Some(Precedence::DaneOnly) => {
            sources.give(Answer::DaneOnly);
            return Answered::Ok;
        }
        Some(Precedence::MtaStsSecureElse(fallback)) => fallback,
    };
    // Never weaker than a usable enforce policy: its `OK` wins over a partial or
    // failed DANE check; anything else gives way to the fallback.
    if sources.mta_sts().await {
        sources.mta_sts_over_dane(fallback);
        return Answered::Ok;
    }
    sources.give(Answer::Fallback(fallback));
    match fallback {
        Fallback::Dane => Answered::Ok,
        Fallback::Temp(_) => Answered::Temp,
    }
}

/// `NOTFOUND ` (SPEC 1.3: with its trailing space), framed.
const NOTFOUND: &[u8] = b"9:NOTFOUND ,";

/// Append the framed reply for a cached policy under a profile; `true` for an `OK`.
/// The `secure match=...` text was built once and kept with the cache entry; the
/// rest is written around it.
fn policy_reply(hit: Hit<'_>, domain: &str, profile: &Profile, out: &mut BytesMut) -> bool {
    let Hit {
        mode,
        answer,
        policy: p,
    } = hit;
    if answer.is_empty() || !enforced(mode, profile) {
        out.extend_from_slice(NOTFOUND);
        return false;
    }
    let suffix = SERVERNAME_SUFFIX[usize::from(profile.servername)];
    if profile.tlsrpt {
        // SPEC 6.3: the attributes Postfix 3.10+ passes on to its TLS-RPT reports.
        let tail = p
            .tlsrpt
            .get_or_init(|| tlsrpt_tail(&p.policy).into_boxed_str());
        if fits_with_tlsrpt(answer.len() + suffix.len(), domain, tail) {
            netstring::encode_parts(
                &[
                    b"OK ",
                    answer.as_bytes(),
                    suffix.as_bytes(),
                    TLSRPT_DOMAIN_PREFIX.as_bytes(),
                    domain.as_bytes(),
                    tail.as_bytes(),
                ],
                out,
            );
            return true;
        }
    }
    netstring::encode_parts(&[b"OK ", answer.as_bytes(), suffix.as_bytes()], out);
    true
}

/// Turns one request frame into one reply. Shared by every connection.
pub struct Handler {
    cache: Arc<PolicyCache>,
    config: RwLock<Arc<Config>>,
    /// Map names already logged as unknown (SPEC 1.2: logged once).
    unknown_maps: Mutex<HashSet<String>>,
    /// SPEC 6.4: DANE results, for profiles with `dane = true`; set once by the
    /// daemon ([`Handler::set_dane`]).
    dane: OnceLock<Arc<DaneCache>>,
}

impl Handler {
    pub fn new(cache: Arc<PolicyCache>, config: Arc<Config>) -> Handler {
        Handler {
            cache,
            config: RwLock::new(config),
            unknown_maps: Mutex::new(HashSet::new()),
            dane: OnceLock::new(),
        }
    }

    /// The DANE cache that profiles with `dane = true` consult (SPEC 6.4).
    pub fn set_dane(&self, dane: Arc<DaneCache>) {
        let _ = self.dane.set(dane);
    }

    /// SIGHUP: new profiles apply to the next request (SPEC 7.3).
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap() = config;
        self.unknown_maps.lock().unwrap().clear();
    }

    /// Answer one request (SPEC 1.2, 1.3, 1.6, 6), appending the framed reply to
    /// `out`. A cache hit copies a reply built once per policy: no allocation.
    pub async fn answer(&self, frame: &[u8], out: &mut BytesMut) {
        let request = match parse_request(frame) {
            Ok(r) => r,
            Err(e) => {
                crate::logging::refused_request(Some(frame), &e);
                crate::metrics::get().answers_perm.increment(1);
                return Reply::Perm(e.to_string()).encode(out);
            }
        };
        let Normalised { key, next_hop } = normalise(request.key);
        let domain = match key {
            Key::Domain(d) => d,
            Key::Skip(why) => {
                log::debug!(
                    "{:?}: {}: NOTFOUND without lookup",
                    request.key,
                    why.as_str()
                );
                crate::metrics::get().answers_skipped.increment(1);
                return out.extend_from_slice(NOTFOUND);
            }
        };
        // One read of the configuration per request; the profile's flags are copied
        // out: no lock or reference count held across the lookup. An override is
        // copied only for a domain that has one.
        let (profile, known, overridden, dane) = {
            let config = self.config.read().unwrap();
            let (profile, known) = config.profile(request.map);
            let name = if known { request.map } else { DEFAULT_PROFILE };
            let overridden = if config.overrides.is_empty() {
                None
            } else {
                config.overrides.get(name, &domain).cloned()
            };
            (
                profile.clone(),
                known,
                overridden,
                config.dane.enabled(name),
            )
        };
        if !known {
            self.log_unknown_map(request.map);
        }
        let mut sources = Caches {
            cache: &self.cache,
            dane: if dane { self.dane.get() } else { None },
            domain: &domain,
            profile: &profile,
            mta_sts_at: out.len(),
            out,
        };
        let answered = answer(overridden.as_ref(), next_hop, &mut sources).await;
        let m = crate::metrics::get();
        match answered {
            Answered::Ok => m.answers_ok.increment(1),
            Answered::NotFound => m.answers_notfound.increment(1),
            Answered::Temp => {}
        }
    }

    fn log_unknown_map(&self, map: &str) {
        let mut seen = self.unknown_maps.lock().unwrap();
        // Bounded: a client cycling through names cannot grow this forever.
        if seen.len() < 1000 && !seen.contains(map) {
            seen.insert(map.to_string());
            log::warn!(
                "socketmap name {map:?} has no profile in the configuration; using the default profile"
            );
        }
    }
}

impl Respond for Handler {
    async fn respond(&self, frame: &[u8], out: &mut BytesMut) {
        self.answer(frame, out).await
    }
}

/// The daemon's sources for one request: the caches, with the reply written
/// straight into the connection's output buffer.
struct Caches<'a> {
    cache: &'a Arc<PolicyCache>,
    /// Set when the profile has `dane = true` and the daemon gave a DANE cache.
    dane: Option<&'a Arc<DaneCache>>,
    domain: &'a str,
    profile: &'a Profile,
    out: &'a mut BytesMut,
    /// Where the MTA-STS reply starts in `out`, for a DANE fallback to replace it.
    mta_sts_at: usize,
}

impl Sources for Caches<'_> {
    async fn dane(&mut self) -> Option<Verdict> {
        // A valid cached DANE result answers without waiting on DNS.
        Some(self.dane?.lookup(self.domain).await)
    }

    /// A cache hit is read in place, under the cache lock (nothing allocated);
    /// otherwise the answer waits for the resolution.
    async fn mta_sts(&mut self) -> bool {
        let (domain, profile) = (self.domain, self.profile);
        self.mta_sts_at = self.out.len();
        let out = &mut *self.out;
        let read = |hit: Hit<'_>| policy_reply(hit, domain, profile, out);
        match self.cache.cached(domain, read) {
            Cached::Policy(ok) => return ok,
            Cached::NoPolicy => {}
            Cached::Unknown => {
                if let Lookup::Policy(p) = self.cache.resolve_miss(domain).await {
                    // Built for this reply only. An answer too long for Postfix is
                    // logged once, by the cache on the policy's first hit.
                    let answer = cached_answer(&p.policy).unwrap_or_default();
                    let hit = Hit {
                        mode: p.policy.mode,
                        answer: &answer,
                        policy: &p,
                    };
                    return policy_reply(hit, domain, profile, self.out);
                }
            }
        }
        self.out.extend_from_slice(NOTFOUND);
        false
    }

    fn give(&mut self, answer: Answer<'_>) {
        let out = &mut *self.out;
        match answer {
            Answer::Override(Override::NoMtaSts) => out.extend_from_slice(NOTFOUND),
            Answer::Override(Override::Answer(text)) => {
                netstring::encode_parts(&[b"OK ", text.as_bytes()], out)
            }
            Answer::DaneOnly => netstring::encode_parts(&[b"OK ", DANE_ONLY.as_bytes()], out),
            Answer::Fallback(fallback) => {
                // MTA-STS's `NOTFOUND ` gives way to the fallback.
                out.truncate(self.mta_sts_at);
                match fallback {
                    Fallback::Dane => netstring::encode_parts(&[b"OK ", DANE.as_bytes()], out),
                    Fallback::Temp(_) => Reply::Temp(fallback.reason(self.domain)).encode(out),
                }
            }
        }
    }

    fn mta_sts_over_dane(&mut self, fallback: Fallback<'_>) {
        let m = crate::metrics::get();
        match fallback {
            Fallback::Dane => m.dane_partial_mta_sts.increment(1),
            Fallback::Temp(_) => m.dane_failed_mta_sts.increment(1),
        }
        let domain = self.domain;
        // Logged after the DANE cache's lock is released (SPEC 7.6).
        if self.dane.is_some_and(|d| d.mta_sts_log_due(domain)) {
            log::info!(
                "{domain}: DANE check {}; answering its MTA-STS enforce policy instead \
                 (at the dane level Postfix would send to MX hosts without TLSA at may); \
                 logged once an hour, counted in mtastsd_dane_mta_sts_answers_total",
                match fallback {
                    Fallback::Dane => "covers only some MX hosts".to_string(),
                    Fallback::Temp(why) => format!("failed ({why})"),
                }
            );
        }
    }
}
