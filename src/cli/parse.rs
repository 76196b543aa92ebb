//! Value parsers of the flags: durations, sizes, addresses and paths, each
//! error naming what was given.

use std::net::SocketAddr;
use std::time::Duration;

/// `T` with every flag at the default its `#[arg]` declares, as if none
/// were given and no variable set: the defaults are written once, there.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("the defaults satisfy the flags");
    T::from_arg_matches(&matches).expect("the defaults satisfy the flags")
}

/// Parses a Go-style duration such as `500ms`, `10m` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 30s or 10m ({e})"))
}

/// Parses a duration that must be above zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be above zero"));
    }
    Ok(d)
}

/// Parses a listen address; `:9186` means every interface.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not host:port or :port"))
}

/// Parses a size in bytes: `4194304`, `512KiB`, `4MiB` (also `KB`/`MB`, `K`/`M`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(format!("{s:?} is not a size like 65536, 512KiB or 4MiB")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{s:?} is not a size like 65536, 512KiB or 4MiB"))
}

/// Parses the path of the metrics: plain segments, not one of the
/// exporter's own endpoints.
pub fn parse_telemetry_path(s: &str) -> Result<String, String> {
    let path = s.trim_end_matches('/');
    let plain = path.starts_with('/')
        && path.len() >= 2
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'));
    if !plain {
        return Err(format!(
            "{s:?} must be a path like /metrics: segments of letters, digits, '-', '.', '_' or '~'"
        ));
    }
    if matches!(path, "/-/healthy" | "/-/ready") {
        return Err(format!("{s:?} is taken by the exporter's own endpoint"));
    }
    Ok(path.to_owned())
}
