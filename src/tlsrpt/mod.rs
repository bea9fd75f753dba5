//! TLS-RPT (RFC 8460): the `_smtp._tls` record that `mtastsd check` audits, and the
//! pure core of SPEC 8's reports (the collector, store and delivery build on it).
//!
//! | file | holds |
//! |---|---|
//! | `record.rs` | the `_smtp._tls.<domain>` record (RFC 8460 §3): parse and select. Pure |
//! | `datagram.rs` | one libtlsrpt datagram from Postfix (SPEC 8.1): parse, bounded. Pure |
//! | `aggregate.rs` | the counts per UTC day, domain, record and policy (SPEC 8.2), merge, the detail cap (8.6). Pure |
//! | `findings.rs` | SPEC 8.3: `no-policy-found` counts of a domain whose policy mtastsd could not fetch, parse or authenticate, relabelled as the failed `sts` policy. Pure |
//! | `report.rs` | the RFC 8460 §4.4 report of one UTC day and domain (SPEC 8.4), its mailto file name and subject. Pure |
//! | `collector.rs` | Postfix's datagrams off the unix socket (SPEC 8.1) into per-second counts, handed to the store on a writer thread (8.2). Edge: a socket, two threads |
//! | `store.rs` | the SQLite file of the counts (8.2), the reports and their deliveries (8.4, never twice), pruned (8.6). Edge: disk |
//! | `mail.rs` | the RFC 8460 §5.3 report mail (SPEC 8.4): multipart/report, CRLF, ASCII. Pure |
//! | `deliver.rs` | one attempt to send a report (SPEC 8.4): HTTPS POST, sendmail(1), the RFC 8460 §5.5 back-off. Edge: network, processes |
//! | `show.rs` | `mtastsd tlsrpt show`: a day's counts and its reports' deliveries, text or JSON. Pure |
//! | `sender.rs` | the reports of the days that ended: built once, stored, delivered when due, retried for a day (SPEC 8.4), pruned (8.6); in a cluster, pushes this node's counts and builds a report only under the lease and the marker. Edge: its own thread |
//! | `cluster.rs` | SPEC 8.2/8.4 with 5.10's Redis: the shared values (one node's totals per day and domain), their checks, the merge, the wait for every node's final push; the `TlsrptCluster` trait (Redis in `cache::redis`). Pure |

pub mod aggregate;
pub mod cluster;
pub mod collector;
pub mod datagram;
pub mod deliver;
pub mod findings;
pub mod mail;
pub mod record;
pub mod report;
pub mod sender;
pub mod show;
pub mod store;

pub use record::{is_tlsrpt_record, parse_record, select_record, Destination, TlsRpt, TlsRptError};
