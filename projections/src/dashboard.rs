//! The supervisor dashboard's figures for one day: read live from the
//! `sessions` read model (not from the Parquet export, which is only as new
//! as the last `witness export`), so they move as sessions do.
//!
//! A day is 24 hours from local midnight, local meaning `offset_minutes`
//! east of UTC (the browser sends its own); a session belongs to the day it
//! started in. Rates are over the day's *ended* sessions, as in the standard
//! `bot-containment` report; percentiles are nearest-rank over exact values.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use witness_engine::chain::time_text;
use witness_schemas::TenantId;

use crate::{ProjectionError, Projector, Value};

/// The furthest a local clock is from UTC, either way (UTC−12 … UTC+14).
pub const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// One day of a tenant's sessions, summed up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayKpis {
    /// `YYYY-MM-DD`, local.
    pub day: String,
    pub offset_minutes: i32,
    /// The day's bounds in UTC, RFC 3339 (for drilling down through `GET /api/sessions`).
    pub since: String,
    pub until: String,
    /// Started that day.
    pub sessions: u64,
    /// Of those, ended by now.
    pub ended: u64,
    /// Still open (started that day, not ended).
    pub open: u64,
    pub bot_resolved: u64,
    /// Asked for a human (queued).
    pub transferred: u64,
    pub assigned: u64,
    pub abandoned: u64,
    /// bot_resolved / ended; None before any session ended.
    pub bot_containment: Option<f64>,
    /// transferred / ended.
    pub transfer_rate: Option<f64>,
    /// abandoned / transferred.
    pub abandonment_rate: Option<f64>,
    /// Seconds from queued to assigned, over the assigned sessions.
    pub wait_p50_secs: Option<f64>,
    pub wait_p90_secs: Option<f64>,
    pub wait_p99_secs: Option<f64>,
    /// Seconds from assigned to ended, averaged over the sessions that were both.
    pub handle_avg_secs: Option<f64>,
    pub ratings: u64,
    pub satisfaction_avg: Option<f64>,
    /// Sessions started in each local hour, 0 to 23.
    pub by_hour: Vec<u64>,
    /// Sessions by channel and by business type, most first (then by name).
    pub by_channel: Vec<(String, u64)>,
    pub by_business_type: Vec<(String, u64)>,
    /// How many ratings of 1 to 5.
    pub satisfaction: [u64; 5],
}

/// The local day `day` as UTC bounds, or an error naming what is wrong.
pub fn day_bounds(
    day: NaiveDate,
    offset_minutes: i32,
) -> Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>), String> {
    if offset_minutes.abs() > MAX_OFFSET_MINUTES {
        return Err(format!("the UTC offset must be within ±{MAX_OFFSET_MINUTES} minutes, got {offset_minutes}"));
    }
    let midnight = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"));
    let since = midnight - Duration::minutes(offset_minutes as i64);
    Ok((since, since + Duration::days(1)))
}

/// One session's times and labels, as the dashboard needs them.
#[derive(Debug, Clone, Default)]
pub struct SessionTimes {
    pub started_at: chrono::DateTime<Utc>,
    pub queued_at: Option<chrono::DateTime<Utc>>,
    pub assigned_at: Option<chrono::DateTime<Utc>>,
    pub ended_at: Option<chrono::DateTime<Utc>>,
    pub channel: Option<String>,
    pub business_type: Option<String>,
    pub outcome: Option<String>,
    pub satisfaction: Option<i64>,
}

/// The nearest-rank `p`-th percentile of sorted `v`.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn ranked(counts: std::collections::BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

impl DayKpis {
    /// The figures of `sessions`, all started within the day that begins at `since`.
    pub fn of(day: NaiveDate, offset_minutes: i32, since: chrono::DateTime<Utc>, sessions: &[SessionTimes]) -> Self {
        let secs =
            |a: chrono::DateTime<Utc>, b: chrono::DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let mut k = DayKpis {
            day: day.to_string(),
            offset_minutes,
            since: time_text(&since),
            until: time_text(&(since + Duration::days(1))),
            sessions: sessions.len() as u64,
            by_hour: vec![0; 24],
            ..Default::default()
        };
        let (mut waits, mut handles, mut rated) = (vec![], vec![], 0i64);
        let (mut channels, mut businesses) = (Default::default(), Default::default());
        let count = |map: &mut std::collections::BTreeMap<String, u64>, key: &Option<String>| {
            *map.entry(key.clone().unwrap_or_else(|| "unknown".into())).or_insert(0) += 1;
        };
        for s in sessions {
            let hour = (s.started_at - since).num_hours().clamp(0, 23) as usize;
            k.by_hour[hour] += 1;
            count(&mut channels, &s.channel);
            count(&mut businesses, &s.business_type);
            if s.ended_at.is_some() {
                k.ended += 1;
                match s.outcome.as_deref() {
                    Some("bot_resolved") => k.bot_resolved += 1,
                    Some("abandoned") => k.abandoned += 1,
                    _ => {}
                }
                if s.queued_at.is_some() {
                    k.transferred += 1;
                }
            }
            if let (Some(q), Some(a)) = (s.queued_at, s.assigned_at) {
                waits.push(secs(q, a));
            }
            if s.assigned_at.is_some() {
                k.assigned += 1;
            }
            if let (Some(a), Some(e)) = (s.assigned_at, s.ended_at) {
                handles.push(secs(a, e));
            }
            if let Some(r @ 1..=5) = s.satisfaction {
                k.satisfaction[r as usize - 1] += 1;
                k.ratings += 1;
                rated += r;
            }
        }
        k.open = k.sessions - k.ended;
        k.bot_containment = ratio(k.bot_resolved, k.ended);
        k.transfer_rate = ratio(k.transferred, k.ended);
        k.abandonment_rate = ratio(k.abandoned, k.transferred);
        waits.sort_by(f64::total_cmp);
        k.wait_p50_secs = percentile(&waits, 50.0);
        k.wait_p90_secs = percentile(&waits, 90.0);
        k.wait_p99_secs = percentile(&waits, 99.0);
        k.handle_avg_secs = (!handles.is_empty()).then(|| handles.iter().sum::<f64>() / handles.len() as f64);
        k.satisfaction_avg = (k.ratings > 0).then(|| rated as f64 / k.ratings as f64);
        k.by_channel = ranked(channels);
        k.by_business_type = ranked(businesses);
        k
    }
}

fn time(v: &Value) -> Result<Option<chrono::DateTime<Utc>>, ProjectionError> {
    match v.opt_text() {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|e| ProjectionError::Table(format!("a time in `sessions` is not RFC 3339 ({t:?}): {e}"))),
    }
}

impl Projector {
    /// `tenant`'s figures for the local `day`.
    pub async fn day_kpis(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
        offset_minutes: i32,
    ) -> Result<DayKpis, ProjectionError> {
        let (since, until) = day_bounds(day, offset_minutes).map_err(ProjectionError::Invalid)?;
        let rows = self
            .select(
                "SELECT started_at, queued_at, assigned_at, ended_at, channel, business_type, outcome, satisfaction \
                 FROM sessions WHERE tenant_id = {1} AND started_at >= {2} AND started_at < {3}",
                vec![Value::from(tenant.as_str()), Value::from(time_text(&since)), Value::from(time_text(&until))],
            )
            .await?;
        let mut sessions = Vec::with_capacity(rows.len());
        for r in rows {
            sessions.push(SessionTimes {
                started_at: time(&r[0])?.unwrap_or(since),
                queued_at: time(&r[1])?,
                assigned_at: time(&r[2])?,
                ended_at: time(&r[3])?,
                channel: r[4].opt_text(),
                business_type: r[5].opt_text(),
                outcome: r[6].opt_text(),
                satisfaction: match r[7] {
                    Value::Int(v) => v,
                    Value::Text(_) => None,
                },
            });
        }
        Ok(DayKpis::of(day, offset_minutes, since, &sessions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, s).unwrap()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn a_local_day_is_shifted_by_its_offset_and_the_offset_is_bounded() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let (since, until) = day_bounds(day, 8 * 60).unwrap();
        assert_eq!(since, Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap());
        assert_eq!(until - since, Duration::days(1));
        assert!(day_bounds(day, 15 * 60).unwrap_err().contains("offset"));
    }

    #[test]
    fn the_figures_of_a_small_day() {
        let s = |start, outcome: Option<&str>| SessionTimes {
            started_at: start,
            ended_at: outcome.map(|_| at(23, 0, 0)),
            outcome: outcome.map(str::to_owned),
            channel: Some("web".into()),
            business_type: Some("loan".into()),
            ..Default::default()
        };
        let queued = |mut t: SessionTimes, wait: i64, rating: Option<i64>| {
            t.queued_at = Some(t.started_at);
            t.assigned_at = Some(t.started_at + Duration::seconds(wait));
            t.satisfaction = rating;
            t
        };
        let mut abandoned = s(at(9, 5, 0), Some("abandoned"));
        abandoned.queued_at = Some(at(9, 5, 30));
        abandoned.channel = Some("app".into());
        let sessions = vec![
            s(at(0, 0, 0), Some("bot_resolved")),
            s(at(9, 0, 0), Some("bot_resolved")),
            queued(s(at(9, 30, 0), Some("resolved")), 10, Some(5)),
            queued(s(at(10, 0, 0), Some("resolved")), 30, Some(2)),
            queued(s(at(23, 59, 59), None), 20, None),
            abandoned,
        ];
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let k = DayKpis::of(day, 0, at(0, 0, 0), &sessions);
        assert_eq!((k.sessions, k.ended, k.open), (6, 5, 1));
        assert_eq!((k.bot_resolved, k.transferred, k.assigned, k.abandoned), (2, 3, 3, 1));
        assert_eq!(k.bot_containment, Some(0.4));
        assert_eq!(k.transfer_rate, Some(0.6));
        assert_eq!(k.abandonment_rate, Some(1.0 / 3.0));
        assert_eq!((k.wait_p50_secs, k.wait_p90_secs), (Some(20.0), Some(30.0)));
        // Handle time over the two assigned sessions that ended at 23:00.
        let handled = ((at(23, 0, 0) - at(9, 30, 10)) + (at(23, 0, 0) - at(10, 0, 30))).num_seconds() as f64 / 2.0;
        assert_eq!(k.handle_avg_secs, Some(handled));
        assert_eq!((k.ratings, k.satisfaction_avg, k.satisfaction), (2, Some(3.5), [0, 1, 0, 0, 1]));
        assert_eq!(k.by_hour.iter().sum::<u64>(), 6);
        assert_eq!((k.by_hour[0], k.by_hour[9], k.by_hour[10], k.by_hour[23]), (1, 3, 1, 1));
        assert_eq!(k.by_channel, vec![("web".to_owned(), 5), ("app".to_owned(), 1)]);
        assert_eq!(k.by_business_type, vec![("loan".to_owned(), 6)]);
        assert_eq!(k.since, "2026-11-27T00:00:00.000000Z");
    }
}
