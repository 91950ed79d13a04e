//! The filters and sorting of `nasflow runs`: by pipeline, status, start time
//! (`--since`), and ordered by a metric.

use super::compare::headline;
use super::load;
use crate::engine::rundir::RunInfo;
use anyhow::{bail, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::path::PathBuf;

/// Run statuses `run.json` can hold.
pub const STATUSES: [&str; 4] = ["running", "ok", "failed", "interrupted"];

/// `--since`: a date (`2026-11-20`), a UTC time (`2026-11-20T14:00`,
/// `2026-11-20T14:00:00Z`, any RFC 3339), or an age (`30m`, `12h`, `3d`, `2w`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let t = s.trim();
    if let Some(unit) = t.chars().last().filter(|c| "smhdw".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<i64>() {
            let secs = n * match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                _ => 7 * 86400,
            };
            return Ok(now - chrono::Duration::seconds(secs));
        }
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t.trim_end_matches('Z'), f) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(d) = d.and_hms_opt(0, 0, 0) {
            return Ok(d.and_utc());
        }
    }
    bail!("--since `{s}`: give a date (2026-11-20), a UTC time (2026-11-20T14:00) or an age (30m, 12h, 3d, 2w)")
}

pub struct Filter {
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn new(pipeline: Option<String>, status: Option<String>, since: Option<&str>) -> Result<Filter> {
        if let Some(s) = &status {
            if !STATUSES.contains(&s.as_str()) {
                bail!("--status `{s}`: a run's status is one of {}", STATUSES.join(", "));
            }
        }
        let since = since.map(|s| parse_since(s, Utc::now())).transpose()?;
        Ok(Filter { pipeline, status, since })
    }

    pub fn keep(&self, i: &RunInfo) -> bool {
        self.pipeline.as_ref().is_none_or(|p| &i.pipeline == p)
            && self.status.as_ref().is_none_or(|s| &i.status == s)
            && self.since.is_none_or(|t| DateTime::parse_from_rfc3339(&i.started).is_ok_and(|s| s.with_timezone(&Utc) >= t))
    }
}

/// A run's value of `metric`: a headline metric (see `compare::HEADLINE`), else
/// the key in the metrics of the last stage that has it.
pub fn metric_of(path: &std::path::Path, info: &RunInfo, metric: &str) -> Option<f64> {
    if let Ok(run) = load::read(path) {
        if let Some(v) = headline(&run).get(metric) {
            return Some(*v);
        }
    }
    info.stages.iter().rev().find_map(|s| s.metrics.as_ref()?.get(metric)?.as_f64())
}

/// Sorts by `metric` ascending (descending with `reverse`); runs without the
/// metric go last either way. Fails when no run has it, naming what exists.
pub fn sort_by_metric(runs: &mut Vec<(PathBuf, RunInfo)>, metric: &str, reverse: bool) -> Result<()> {
    let mut keyed: Vec<(Option<f64>, (PathBuf, RunInfo))> = runs.drain(..).map(|r| (metric_of(&r.0, &r.1, metric), r)).collect();
    if !keyed.is_empty() && keyed.iter().all(|(k, _)| k.is_none()) {
        let mut known: Vec<String> = super::compare::HEADLINE.iter().map(|(k, _)| k.to_string()).collect();
        for (_, (_, i)) in &keyed {
            for s in &i.stages {
                if let Some(m) = s.metrics.as_ref().and_then(|m| m.as_object()) {
                    known.extend(m.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.clone()));
                }
            }
        }
        known.sort();
        known.dedup();
        bail!("--sort `{metric}`: no listed run has this metric; try one of {}", known.join(", "));
    }
    keyed.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => if reverse { y.total_cmp(&x) } else { x.total_cmp(&y) },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    runs.extend(keyed.into_iter().map(|(_, r)| r));
    Ok(())
}
