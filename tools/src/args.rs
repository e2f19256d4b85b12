//! Parsers for command-line values: `key=value` pairs, acks, start positions and timestamps.

use std::str::FromStr;

/// Parses `key=value` (the value may contain `=`; it may be empty).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Produce acknowledgement mode, as Kafka spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer from the broker.
    None,
    /// The leader has the records.
    Leader,
    /// All in-sync replicas have them (after fsync on Sluice).
    All,
}

impl Acks {
    /// The wire value of `acks`.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// The librdkafka / Java client property value.
    pub fn property(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1 or all, not {s:?}")),
        }
    }
}

/// Where to start reading a partition, or which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The log start offset.
    Earliest,
    /// The log end offset (only records written from now on).
    Latest,
    /// An exact offset.
    Offset(i64),
    /// The first record with a timestamp ≥ this (ms since the epoch).
    Timestamp(i64),
}

impl Position {
    /// The ListOffsets timestamp that resolves this position (`None` for an exact offset).
    pub fn list_offsets_timestamp(self) -> Option<i64> {
        match self {
            Position::Earliest => Some(-2),
            Position::Latest => Some(-1),
            Position::Timestamp(t) => Some(t),
            Position::Offset(_) => None,
        }
    }
}

impl FromStr for Position {
    type Err = String;
    /// `earliest`, `latest`, an offset (`42`), or `@` and a timestamp (`@1700000000000`,
    /// `@2026-11-22T04:00:00Z`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(Position::Earliest),
            "latest" | "end" => Ok(Position::Latest),
            _ => {
                if let Some(ts) = s.strip_prefix('@') {
                    return timestamp_ms(ts).map(Position::Timestamp);
                }
                match s.parse::<i64>() {
                    Ok(o) if o >= 0 => Ok(Position::Offset(o)),
                    _ => Err(format!(
                        "expected earliest, latest, an offset or @TIMESTAMP, got {s:?}"
                    )),
                }
            }
        }
    }
}

/// Parses milliseconds since the epoch, or a UTC RFC 3339 time `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
pub fn timestamp_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return if ms >= 0 {
            Ok(ms)
        } else {
            Err(format!("negative timestamp {ms}"))
        };
    }
    let bad = || format!("expected ms since the epoch or YYYY-MM-DDTHH:MM:SS[.mmm]Z, got {s:?}");
    let rest = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .ok_or_else(bad)?;
    let (date, time) = rest.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let num = |p: &str| p.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let (time, millis) = match time.split_once('.') {
        Some((t, frac)) if !frac.is_empty() && frac.len() <= 9 => {
            let scaled = format!("{frac:0<3}");
            (t, num(&scaled[..3])?)
        }
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let (y, mo, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi, sec) = (num(t[0])?, num(t[1])?, num(t[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, day);
    Ok(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(key_value("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn acks() {
        assert_eq!("all".parse::<Acks>().unwrap().wire(), -1);
        assert_eq!("-1".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("0".parse::<Acks>().unwrap().wire(), 0);
        assert_eq!("1".parse::<Acks>().unwrap().property(), "1");
        assert!("2".parse::<Acks>().is_err());
    }

    #[test]
    fn positions() {
        assert_eq!("earliest".parse(), Ok(Position::Earliest));
        assert_eq!("latest".parse(), Ok(Position::Latest));
        assert_eq!("17".parse(), Ok(Position::Offset(17)));
        assert_eq!("@1000".parse(), Ok(Position::Timestamp(1000)));
        assert!("-3".parse::<Position>().is_err());
        assert!("soon".parse::<Position>().is_err());
        assert_eq!(Position::Earliest.list_offsets_timestamp(), Some(-2));
        assert_eq!(Position::Latest.list_offsets_timestamp(), Some(-1));
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(timestamp_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(timestamp_ms("2001-09-09T01:46:40Z"), Ok(1_000_000_000_000));
        assert_eq!(
            timestamp_ms("2001-09-09T01:46:40.5Z"),
            Ok(1_000_000_000_500)
        );
        assert_eq!(
            timestamp_ms("2024-02-29T12:00:00.123Z"),
            Ok(1_709_208_000_123)
        );
        assert_eq!(timestamp_ms("1700000000000"), Ok(1_700_000_000_000));
        assert!(timestamp_ms("2024-13-01T00:00:00Z").is_err());
        assert!(timestamp_ms("2024-01-01T00:00:00").is_err());
        assert!(timestamp_ms("yesterday").is_err());
    }
}
