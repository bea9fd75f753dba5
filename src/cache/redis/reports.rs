//! The TLS-RPT cluster on Redis (SPEC 8.2, 8.4 with 5.10): each node's totals per
//! day and domain, heartbeats, the report lease and the claim, signed and capped like
//! the policy records.

use super::*;

/// The hash fields (node id, value) of one key, each value longer than ARGV[1] bytes
/// replaced by an empty one (no value is empty), at most ARGV[2] fields: a node
/// never reads more than that, however large what someone wrote.
const CAPPED_HGETALL: &str = "local all = redis.call('HGETALL', KEYS[1]) \
     local out = {} \
     for i = 1, math.min(#all, 2 * tonumber(ARGV[2])), 2 do \
       local v = all[i + 1] \
       if string.len(v) > tonumber(ARGV[1]) then v = '' end \
       out[#out + 1] = all[i] \
       out[#out + 1] = v \
     end \
     return out";

/// Take the report's lease, or keep our own: 1; another node's: 0; a lease longer
/// than nodes take (or for ever), which no node took: 2, ignored.
const TLSRPT_LEASE_SCRIPT: &str =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
     if redis.call('GET', KEYS[1]) == ARGV[1] then \
       redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
     local left = redis.call('PTTL', KEYS[1]) \
     if left < 0 or left > tonumber(ARGV[2]) then return 2 end \
     return 0";

/// `SET NX PX`, and the value in place afterwards (ours when it was set).
const CLAIM_SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) \
     return redis.call('GET', KEYS[1])";

/// How many values one pipeline pushes: each call is bounded by the timeout.
const PUSH_CHUNK: usize = 200;
/// The heartbeats of nodes that stopped go with the hash when no node is left.
const NODES_TTL: Duration = Duration::from_secs(7 * 86_400);
/// A heartbeat is two numbers.
const MAX_HEARTBEAT: usize = 256;
/// Heartbeats read: one per node that ran in the last week.
const MAX_HEARTBEATS: usize = 1024;

impl RedisCluster {
    fn tlsrpt_key(&self, what: std::fmt::Arguments<'_>) -> String {
        format!("{}tlsrpt:{what}", self.prefix)
    }

    fn counts_key(&self, day: Day, domain: &str) -> String {
        self.tlsrpt_key(format_args!("{day}:{domain}"))
    }

    /// A value as stored: signed, with the cluster's key, for this key and field.
    fn seal_field(&self, key: &str, field: &str, json: &[u8]) -> Vec<u8> {
        match &self.key {
            Some(secret) => seal(secret, &format!("{key}\n{field}"), json),
            None => json.to_vec(),
        }
    }

    /// The fields of a hash that pass the size cap and the signature; the others are
    /// counted and logged at debug.
    async fn read_fields(
        &self,
        key: &str,
        max: usize,
        fields: usize,
    ) -> Result<tlsrpt::NodeValues, SharedError> {
        let raw = self
            .call(|mut conn| async move {
                ::redis::cmd("EVAL")
                    .arg(CAPPED_HGETALL)
                    .arg(1)
                    .arg(key)
                    .arg(max)
                    .arg(fields)
                    .query_async::<Vec<Vec<u8>>>(&mut conn)
                    .await
                    .map_err(Failure::Redis)
            })
            .await
            .map_err(shared)?;
        let mut out = Vec::new();
        for pair in raw.chunks_exact(2) {
            let node = match std::str::from_utf8(&pair[0]) {
                Ok(n) if tlsrpt::is_token(n) => n,
                _ => {
                    reject(key, "invalid");
                    continue;
                }
            };
            if pair[1].is_empty() {
                reject(key, "too_large");
                continue;
            }
            match unseal_max(self.key.as_ref(), &format!("{key}\n{node}"), &pair[1], max) {
                Ok(json) => out.push((node.to_owned(), json.to_vec())),
                Err(why) => reject(key, why),
            }
        }
        Ok(out)
    }
}

fn shared(e: ClusterError) -> SharedError {
    SharedError(e.0)
}

fn reject(key: &str, why: &'static str) {
    crate::metrics::tlsrpt_shared_rejected(why);
    log::debug!("shared cache: {key}: a TLS-RPT value ignored ({why})");
}

impl RedisCluster {
    /// One command through [`RedisCluster::call`] (its timeout, its retry on a
    /// dropped connection), its reply as `T`.
    async fn query<T: ::redis::FromRedisValue>(
        &self,
        cmd: &mut ::redis::Cmd,
    ) -> Result<T, SharedError> {
        let cmd = &*cmd;
        self.call(|mut conn| async move {
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(Failure::Redis)
        })
        .await
        .map_err(shared)
    }
}

impl RedisCluster {
    /// A pipeline through [`RedisCluster::call`], its replies ignored.
    async fn run(&self, pipe: &::redis::Pipeline) -> Result<(), SharedError> {
        self.call(|mut conn| async move {
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(Failure::Redis)
        })
        .await
        .map_err(shared)
    }
}

impl TlsrptCluster for RedisCluster {
    fn has_heartbeat<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<bool, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            self.query::<bool>(::redis::cmd("HEXISTS").arg(&key).arg(node))
                .await
        }
        .boxed()
    }

    fn push<'a>(
        &'a self,
        node: &'a str,
        values: &'a [(Day, String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let ttl = ttl_ms(tlsrpt::VALUE_TTL);
            for chunk in values.chunks(PUSH_CHUNK) {
                let mut pipe = ::redis::pipe();
                for (day, domain, json) in chunk {
                    let key = self.counts_key(*day, domain);
                    let domains = self.tlsrpt_key(format_args!("domains:{day}"));
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg(node)
                        .arg(self.seal_field(&key, node, json))
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl)
                        .ignore()
                        .cmd("SADD")
                        .arg(&domains)
                        .arg(domain)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&domains)
                        .arg(ttl)
                        .ignore();
                }
                // Repeating a chunk is harmless: the same totals, the same members.
                self.run(&pipe).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn set_heartbeat<'a>(
        &'a self,
        node: &'a str,
        heartbeat: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            let mut pipe = ::redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg(node)
                .arg(self.seal_field(&key, node, heartbeat))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_ms(NODES_TTL))
                .ignore();
            self.run(&pipe).await
        }
        .boxed()
    }

    fn heartbeats(&self) -> BoxFuture<'_, Result<tlsrpt::NodeValues, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            self.read_fields(&key, MAX_HEARTBEAT, MAX_HEARTBEATS).await
        }
        .boxed()
    }

    fn domains(&self, day: Day) -> BoxFuture<'_, Result<Vec<String>, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("domains:{day}"));
            let raw = self
                .query::<Vec<Vec<u8>>>(::redis::cmd("SMEMBERS").arg(&key))
                .await?;
            // Checked by the caller (`cluster::is_domain`); not UTF-8 is not a name.
            Ok(raw
                .into_iter()
                .map(|d| String::from_utf8(d).unwrap_or_default())
                .collect())
        }
        .boxed()
    }

    fn values<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<tlsrpt::NodeValues, SharedError>> {
        async move {
            let key = self.counts_key(day, domain);
            self.read_fields(&key, tlsrpt::MAX_VALUE, tlsrpt::MAX_NODES)
                .await
        }
        .boxed()
    }

    fn lease<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("lease:{day}:{domain}"));
            let ms = ttl_ms(tlsrpt::LEASE_TTL);
            let answer = self
                .query::<i64>(
                    ::redis::cmd("EVAL")
                        .arg(TLSRPT_LEASE_SCRIPT)
                        .arg(1)
                        .arg(&key)
                        .arg(node)
                        .arg(ms),
                )
                .await?;
            if answer == 2 {
                reject(&key, "lease");
            }
            Ok(answer != 0)
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("lease:{day}:{domain}"));
            self.query::<i64>(
                ::redis::cmd("EVAL")
                    .arg(RELEASE_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(node),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn sent<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("sent:{day}:{domain}"));
            let raw = self
                .query::<Option<Vec<u8>>>(::redis::cmd("GET").arg(&key))
                .await?;
            Ok(raw.and_then(|raw| self.marker(&key, &raw)))
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        report_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("sent:{day}:{domain}"));
            let ours = self.seal_field(&key, "", report_id.as_bytes());
            let ms = ttl_ms(tlsrpt::MARKER_TTL);
            // Twice at most: a marker no node wrote (unsigned, garbage) is deleted,
            // exactly that value, and the claim made again.
            for _ in 0..2 {
                let (key_ref, ours_ref) = (&key, &ours);
                let held = self
                    .call(|mut conn| async move {
                        ::redis::cmd("EVAL")
                            .arg(CLAIM_SCRIPT)
                            .arg(1)
                            .arg(key_ref)
                            .arg(ours_ref)
                            .arg(ms)
                            .query_async::<Vec<u8>>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    })
                    .await
                    .map_err(shared)?;
                if held == ours {
                    return Ok(report_id.to_owned());
                }
                if let Some(id) = self.marker(&key, &held) {
                    return Ok(id);
                }
                let held = &held;
                self.call(|mut conn| async move {
                    ::redis::cmd("EVAL")
                        .arg(RELEASE_SCRIPT)
                        .arg(1)
                        .arg(key_ref)
                        .arg(held)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(Failure::Redis)
                })
                .await
                .map_err(shared)?;
            }
            Err(SharedError(format!("{key}: the marker cannot be set")))
        }
        .boxed()
    }
}

impl RedisCluster {
    /// The report-id in a marker as read, if a node wrote it.
    fn marker(&self, key: &str, raw: &[u8]) -> Option<String> {
        let id = match unseal_max(self.key.as_ref(), &format!("{key}\n"), raw, 256) {
            Ok(id) => id,
            Err(why) => {
                reject(key, why);
                return None;
            }
        };
        match std::str::from_utf8(id) {
            Ok(id) if tlsrpt::is_token(id) => Some(id.to_owned()),
            _ => {
                reject(key, "invalid");
                None
            }
        }
    }
}
