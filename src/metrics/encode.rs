//! One scrape: a `prometheus-client` collector over the static counters, encoded in the
//! Prometheus text format 0.0.4. Counter names get `_total` from the encoder.

use std::fmt::Error;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::registry::{Metrics, METRICS};

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The text of one scrape (plus `extra` series: readiness, computed by the caller).
pub fn render() -> Result<String, Error> {
    let mut registry = Registry::with_prefix("pacsgate");
    registry.register_collector(Box::new(Snapshot));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Snapshot;

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let m: &Metrics = &METRICS;
        let overflow = m.http_requests.overflow();
        counter(
            &mut enc,
            "http_requests",
            "HTTP responses sent, by status code (the PACS's and the gateway's own)",
            m.http_requests
                .snapshot()
                .map(|(s, v)| (vec![("status", s.to_string())], v))
                // Status codes beyond the table (the PACS chooses them): one series.
                .chain((overflow > 0).then(|| (vec![("status", "other".to_string())], overflow))),
        )?;
        counter(
            &mut enc,
            "http_refusals",
            "HTTP requests refused by the gateway, by reason",
            m.http_refusals
                .snapshot()
                .map(|(r, v)| (vec![("reason", r.to_string())], v)),
        )?;
        let (sum, count, buckets) = m.http_duration.snapshot();
        enc.encode_descriptor(
            "http_request_duration_seconds",
            "Time from request head to the end of the response body",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        counter(
            &mut enc,
            "tls_handshakes",
            "TLS handshakes by listener, result (ok, failed, timeout), version and ALPN protocol",
            m.tls_handshakes.snapshot().map(|((l, r, ver, alpn), v)| {
                (
                    vec![
                        ("listener", l.into()),
                        ("result", r.into()),
                        ("version", ver.into()),
                        ("alpn", alpn.into()),
                    ],
                    v,
                )
            }),
        )?;
        gauge(
            &mut enc,
            "open_connections",
            "Connections open now, by listener",
            m.open_connections
                .snapshot()
                .map(|(l, v)| (vec![("listener", l.to_string())], v as i64)),
        )?;
        counter(
            &mut enc,
            "connection_budget_refusals",
            "Connections closed at accept by the per-address budgets, by listener",
            m.budget_refusals
                .snapshot()
                .map(|(l, v)| (vec![("listener", l.to_string())], v)),
        )?;
        counter(
            &mut enc,
            "proxy_protocol",
            "PROXY protocol headers by listener and result (proxy, local; refused: missing, malformed, timeout, closed, untrusted)",
            m.proxy_protocol.snapshot().map(|((l, r), v)| {
                (vec![("listener", l.into()), ("result", r.into())], v)
            }),
        )?;
        counter(
            &mut enc,
            "dicom_associations",
            "DICOM associations by listener, result and reject reason",
            m.associations.snapshot().map(|((l, r, why), v)| {
                (
                    vec![
                        ("listener", l.into()),
                        ("result", r.into()),
                        ("reason", why.into()),
                    ],
                    v,
                )
            }),
        )?;
        counter(
            &mut enc,
            "dimse_commands",
            "DIMSE requests seen, by command",
            m.dimse_commands
                .snapshot()
                .map(|(c, v)| (vec![("command", c.to_string())], v)),
        )?;
        counter(
            &mut enc,
            "dimse_refusals",
            "DIMSE requests refused by the modality policy, by command",
            m.dimse_refusals
                .snapshot()
                .map(|(c, v)| (vec![("command", c.to_string())], v)),
        )?;
        counter(
            &mut enc,
            "relayed_bytes",
            "Bytes relayed, by listener and direction (in = from the client)",
            m.bytes
                .snapshot()
                .map(|((l, d), v)| (vec![("listener", l.into()), ("direction", d.into())], v)),
        )?;
        counter(
            &mut enc,
            "rate_limit_refusals",
            "Requests and associations refused by a rate limit, by listener and limit",
            m.rate_limited
                .snapshot()
                .map(|((l, lim), v)| (vec![("listener", l.into()), ("limit", lim.into())], v)),
        )?;
        counter(
            &mut enc,
            "lockout_refusals",
            "HTTP requests refused while their login key is locked out",
            m.lockouts
                .snapshot()
                .map(|(l, v)| (vec![("listener", l.to_string())], v)),
        )?;
        counter(
            &mut enc,
            "upstream_errors",
            "Failures talking to the PACS, by listener and kind",
            m.upstream_errors
                .snapshot()
                .map(|((l, k), v)| (vec![("listener", l.into()), ("kind", k.into())], v)),
        )?;
        counter(
            &mut enc,
            "reloads",
            "Reloads of the TLS material and the configuration, by result",
            m.reloads
                .snapshot()
                .map(|((w, r), v)| (vec![("what", w.into()), ("result", r.into())], v)),
        )?;
        audit(&mut enc, m)?;
        cluster(&mut enc, m)?;
        gauge(
            &mut enc,
            "certificate_not_after_seconds",
            "Expiry (notAfter, unix seconds) of each serving certificate",
            m.certificates()
                .into_iter()
                .map(|(p, t)| (vec![("cert", p)], t)),
        )?;
        Ok(())
    }
}

/// `[cluster]`: both series always present (0 without `[cluster]`), so an alert on them
/// needs no absent-series case.
fn cluster(enc: &mut DescriptorEncoder, m: &Metrics) -> Result<(), Error> {
    use std::sync::atomic::Ordering::Relaxed;
    gauge(
        enc,
        "cluster_degraded",
        "1 while shared limits are decided without Redis (rates local, password logins refused)",
        std::iter::once((
            Labels::new(),
            i64::from(m.cluster_degraded.load(Relaxed) > 0),
        )),
    )?;
    counter(
        enc,
        "cluster_redis_failures",
        "Calls to the shared limit store (Redis) that failed or timed out, by reason",
        ["error", "timeout"].iter().map(|r| {
            (
                vec![("reason", r.to_string())],
                m.cluster_failures.value(*r),
            )
        }),
    )
}

/// The audit queue's health: every reason is reported (0 included) so an alert on
/// `pacsgate_audit_records_lost_total > 0` needs no absent-series special case.
fn audit(enc: &mut DescriptorEncoder, m: &Metrics) -> Result<(), Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let one = |v: u64| std::iter::once((Labels::new(), v));
    counter(
        enc,
        "audit_records_written",
        "Audit records written (to audit.path, or to the log)",
        one(m.audit_written.load(Relaxed)),
    )?;
    counter(
        enc,
        "audit_records_lost",
        "Audit records lost, by reason (queue_full: the writer could not keep up or the disk is full; shutdown: not written by the end of the drain; unserialisable)",
        super::registry::AUDIT_LOST_REASONS
            .iter()
            .map(|r| (vec![("reason", r.to_string())], m.audit_lost.value(*r))),
    )?;
    gauge(
        enc,
        "audit_queue_records",
        "Audit records waiting in memory for the writer",
        std::iter::once((
            Labels::new(),
            i64::try_from(m.audit_queued.load(Relaxed)).unwrap_or(i64::MAX),
        )),
    )?;
    counter(
        enc,
        "audit_write_errors",
        "Failed writes to the audit file (the batch is kept and retried)",
        one(m.audit_write_errors.load(Relaxed)),
    )
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, u64)>,
) -> Result<(), Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        family(&mut metric, &labels)?.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, i64)>,
) -> Result<(), Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        family(&mut metric, &labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

fn family<'a, S: EncodeLabelSet>(
    metric: &'a mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &'a S,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, Error> {
    metric.encode_family(labels)
}
