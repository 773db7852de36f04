//! A namespace's retention, as the policy declares it: how long and how much
//! of its topics Pulsar keeps beyond what subscriptions still need.
//!
//! Why the policy carries it: Pulsar keeps a message until every
//! subscription has acknowledged it, or for the namespace's retention, whose
//! default is none. A topic read only with cursors (no subscription) thus
//! keeps nothing past a ledger roll, and a broker failover rolls the ledger:
//! events the gateway acknowledged with a 202 can be trimmed minutes later.
//! Declared here, `rotate`'s reconciler sets it like the rest of the
//! namespace, so it cannot drift away unnoticed.
//!
//! Units follow Pulsar's: whole minutes and whole MiB (Pulsar's "MB" is
//! 1024 × 1024 bytes), each limit positive or `unlimited`. Both are
//! required: Pulsar refuses one limit 0 with the other set, and disabling
//! retention is the broker default, which a namespace without `retention:`
//! keeps (the reconciler leaves an undeclared retention alone).

use std::fmt;

use crate::config::parse_duration;

/// One limit of a retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit on this axis (Pulsar's `-1`).
    Unlimited,
    /// At most this many units (minutes or MiB), at least 1.
    AtMost(u32),
}

impl Limit {
    /// The value of Pulsar's `retentionTimeInMinutes` / `retentionSizeInMB`.
    pub fn pulsar_value(self) -> i64 {
        match self {
            Self::Unlimited => -1,
            Self::AtMost(n) => i64::from(n),
        }
    }
}

/// A namespace's declared retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Age limit, in minutes.
    pub minutes: Limit,
    /// Size limit, in MiB.
    pub mebibytes: Limit,
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |limit: Limit, unit: &str| match limit {
            Limit::Unlimited => "unlimited".to_owned(),
            Limit::AtMost(n) => format!("{n}{unit}"),
        };
        write!(
            f,
            "{} / {}",
            show(self.minutes, "m"),
            show(self.mebibytes, "MiB")
        )
    }
}

const UNLIMITED: &str = "unlimited";

/// The age limit: `unlimited`, or a duration of whole minutes (`90m`,
/// `24h`, `7d`).
pub(super) fn time_limit(text: &str) -> Result<Limit, String> {
    if text.trim() == UNLIMITED {
        return Ok(Limit::Unlimited);
    }
    let secs = parse_duration(text)?.as_secs();
    if secs == 0 {
        return Err(format!(
            "retention time must be at least 1m (or {UNLIMITED}), got {text:?}"
        ));
    }
    if secs % 60 != 0 {
        return Err(format!(
            "retention time is kept in whole minutes; {text:?} is not"
        ));
    }
    // Pulsar keeps the minutes in a Java int.
    match u32::try_from(secs / 60) {
        Ok(minutes) if minutes <= i32::MAX as u32 => Ok(Limit::AtMost(minutes)),
        _ => Err(format!(
            "retention time {text:?} is too long (write {UNLIMITED})"
        )),
    }
}

/// The size limit: `unlimited`, or a whole number of MiB, GiB or TiB (a
/// bare number is MiB). Decimal units (MB, GB) are refused rather than
/// guessed at: Pulsar's "MB" is a MiB, and 10 GB and 10 GiB differ by 7%.
pub(super) fn size_limit(text: &str) -> Result<Limit, String> {
    let text = text.trim();
    if text == UNLIMITED {
        return Ok(Limit::Unlimited);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("expected a size like 512MiB, 10GiB or 1TiB (or {UNLIMITED}), got {text:?}")
    })?;
    let mib_per_unit = match unit {
        "" | "MiB" => 1,
        "GiB" => 1024,
        "TiB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (use MiB, GiB or TiB)"
            ));
        }
    };
    match n.checked_mul(mib_per_unit).map(u32::try_from) {
        Some(Ok(0)) => Err(format!(
            "retention size must be at least 1MiB (or {UNLIMITED}), got {text:?}"
        )),
        Some(Ok(mib)) => Ok(Limit::AtMost(mib)),
        _ => Err(format!(
            "retention size {text:?} is too large (write {UNLIMITED})"
        )),
    }
}
