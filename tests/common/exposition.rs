//! A strict parser of the Prometheus text format 0.0.4 and of OpenMetrics
//! 1.0 text, for checking what /metrics serves: every line must be valid,
//! families contiguous, one TYPE and one HELP per family, no duplicate
//! series, no duplicate label; OpenMetrics ends with `# EOF`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed body.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
}

impl Exposition {
    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// Asserts that the samples `keep` selects are the same, labels and
    /// values, in `self` (from the RLP) and in `firehose`; returns how many.
    pub fn assert_same_as(&self, firehose: &Exposition, keep: impl Fn(&Sample) -> bool) -> usize {
        let set = |p: &Exposition| -> std::collections::BTreeSet<String> {
            p.samples
                .iter()
                .filter(|s| keep(s))
                .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                .collect()
        };
        let (rlp, firehose) = (set(self), set(firehose));
        let only_rlp: Vec<_> = rlp.difference(&firehose).collect();
        let only_firehose: Vec<_> = firehose.difference(&rlp).collect();
        assert!(
            only_rlp.is_empty() && only_firehose.is_empty(),
            "only from the RLP: {only_rlp:#?}\nonly from the Firehose: {only_firehose:#?}"
        );
        rlp.len()
    }

    /// The value of the one sample matching, panicking with the body's names otherwise.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(
            found.len() <= 1,
            "{} samples match {name} {labels:?}",
            found.len()
        );
        found.first().map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses `{a="b",...}` starting after the name; returns labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((labels, s));
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value without quote")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// Parses and checks a whole body in the text format 0.0.4.
pub fn parse(body: &str) -> Result<Exposition, String> {
    parse_with(body, false)
}

/// Parses and checks a whole body in OpenMetrics 1.0 text. Counter families
/// are typed under their name and their samples end in `_total`.
pub fn parse_openmetrics(body: &str) -> Result<Exposition, String> {
    let content = body
        .strip_suffix("# EOF\n")
        .ok_or("OpenMetrics body does not end with \"# EOF\"")?;
    if content.lines().any(|l| l == "# EOF") {
        return Err("text after # EOF".into());
    }
    parse_with(content, true)
}

fn parse_with(body: &str, openmetrics: bool) -> Result<Exposition, String> {
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("body does not end with a newline".into());
    }
    let mut out = Exposition::default();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if finished.contains(family) {
                return Err(format!("family {family} is not contiguous"));
            }
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            *current = Some(family.to_owned());
        }
        Ok(())
    };
    for (n, line) in body.lines().enumerate() {
        let fail = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if openmetrics && line.is_empty() {
            return Err(fail("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_metric_name(name) {
                return Err(fail(format!("bad name {name:?}")));
            }
            enter(name, &mut current).map_err(fail)?;
            if out.help.insert(name.to_owned(), text.to_owned()).is_some() {
                return Err(fail(format!("second HELP for {name}")));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("TYPE without type".into()))?;
            if !is_metric_name(name) {
                return Err(fail(format!("bad name {name:?}")));
            }
            let kinds: &[&str] = if openmetrics {
                &[
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "stateset",
                    "info",
                    "gaugehistogram",
                ]
            } else {
                &["counter", "gauge", "histogram", "summary", "untyped"]
            };
            if !kinds.contains(&kind) {
                return Err(fail(format!("bad type {kind:?}")));
            }
            enter(name, &mut current).map_err(fail)?;
            if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(fail(format!("second TYPE for {name}")));
            }
            if out.samples.iter().any(|s| s.name == name) {
                return Err(fail(format!("TYPE for {name} after its samples")));
            }
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| fail("sample without value".into()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(fail(format!("bad name {name:?}")));
            }
            let (labels, rest) = parse_labels(&line[name_end..]).map_err(fail)?;
            let mut parts = rest
                .strip_prefix(' ')
                .ok_or_else(|| fail("no space before value".into()))?
                .split(' ');
            let value = parse_value(parts.next().unwrap_or("")).map_err(fail)?;
            if let Some(ts) = parts.next() {
                ts.parse::<i64>()
                    .map_err(|_| fail(format!("bad timestamp {ts:?}")))?;
            }
            if parts.next().is_some() {
                return Err(fail("trailing text".into()));
            }
            // In OpenMetrics a counter's samples carry a suffix its family
            // lacks; in both formats a histogram's do.
            let typed = |stem: &str| out.types.get(stem).map(String::as_str);
            let family = match name.strip_suffix("_total") {
                Some(stem) if openmetrics && typed(stem) == Some("counter") => stem,
                _ => HISTOGRAM_SUFFIXES
                    .iter()
                    .find_map(|suffix| {
                        name.strip_suffix(suffix)
                            .filter(|stem| typed(stem) == Some("histogram"))
                    })
                    .unwrap_or(name),
            };
            if openmetrics && typed(name) == Some("counter") {
                return Err(fail(format!("counter sample {name} without _total")));
            }
            if typed(name) == Some("histogram") {
                return Err(fail(format!("histogram sample {name} without a suffix")));
            }
            if name.ends_with("_bucket") && family != name && !labels.contains_key("le") {
                return Err(fail("bucket without le".into()));
            }
            enter(family, &mut current).map_err(fail)?;
            let key = (name.to_owned(), labels.clone().into_iter().collect());
            if !seen.insert(key) {
                return Err(fail("duplicate series".into()));
            }
            out.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    check_histograms(&out)?;
    Ok(out)
}

/// What a histogram family's samples add to its name.
const HISTOGRAM_SUFFIXES: [&str; 4] = ["_bucket", "_sum", "_count", "_created"];

/// Every series of a histogram family has buckets with ascending `le`
/// ending in `+Inf`, cumulative counts, a `_sum`, and a `_count` equal to
/// the `+Inf` bucket.
fn check_histograms(out: &Exposition) -> Result<(), String> {
    type Series = (String, Vec<(String, String)>);
    let mut buckets: BTreeMap<Series, Vec<(f64, f64)>> = BTreeMap::new();
    let mut sums: HashSet<Series> = HashSet::new();
    let mut counts: HashMap<Series, f64> = HashMap::new();
    for (family, _) in out.types.iter().filter(|(_, kind)| *kind == "histogram") {
        for sample in &out.samples {
            let Some(suffix) = sample.name.strip_prefix(family.as_str()) else {
                continue;
            };
            let mut labels = sample.labels.clone();
            let le = labels.remove("le");
            let key = (family.clone(), labels.into_iter().collect());
            match suffix {
                "_bucket" => {
                    let le = le.ok_or("bucket without le")?;
                    let le = parse_value(&le).map_err(|e| format!("{family}: le {e}"))?;
                    buckets.entry(key).or_default().push((le, sample.value));
                }
                "_sum" => {
                    sums.insert(key);
                }
                "_count" => {
                    counts.insert(key, sample.value);
                }
                _ => {}
            }
        }
    }
    for (key, series) in &buckets {
        let what = format!("histogram {} {:?}", key.0, key.1);
        if series.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(format!("{what}: le not ascending"));
        }
        if series.windows(2).any(|w| w[0].1 > w[1].1) {
            return Err(format!("{what}: buckets not cumulative"));
        }
        let &(last_le, last) = series.last().expect("one bucket at least");
        if last_le != f64::INFINITY {
            return Err(format!("{what}: no +Inf bucket"));
        }
        if !sums.contains(key) {
            return Err(format!("{what}: no _sum"));
        }
        if counts.get(key) != Some(&last) {
            return Err(format!("{what}: _count is not the +Inf bucket"));
        }
    }
    if let Some(key) = counts.keys().find(|key| !buckets.contains_key(*key)) {
        return Err(format!("histogram {} {:?}: no buckets", key.0, key.1));
    }
    Ok(())
}

#[test]
fn the_parser_rejects_what_it_must() {
    assert!(parse("a 1\n").is_ok());
    assert!(parse("a{b=\"x\\\"y\"} 1\n").is_ok());
    assert_eq!(
        parse("a{b=\"x\\\"y\\\\z\\nw\"} 1\n").unwrap().samples[0].labels["b"],
        "x\"y\\z\nw"
    );
    for bad in [
        "a 1",
        "a{b=\"1\" 1\n",
        "a{b=\"1\",b=\"2\"} 1\n",
        "a{__b=\"1\"} 1\n",
        "1a 1\n",
        "a{b=\"\\x\"} 1\n",
        "a 1\nb 1\na 2\n",
        "a 1\na 2\n",
        "# TYPE a gauge\n# TYPE a counter\n",
        "a one\n",
        "a-b 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be rejected");
    }
    let om = "# HELP c C.\n# TYPE c counter\nc_total{a=\"b\"} 1.0\n# TYPE g gauge\ng 2\n# EOF\n";
    let parsed = parse_openmetrics(om).unwrap();
    assert_eq!(parsed.types["c"], "counter");
    assert_eq!(parsed.value("c_total", &[("a", "b")]), Some(1.0));
    for bad in [
        "# TYPE c counter\nc_total 1\n",
        "# TYPE c counter\nc 1\n# EOF\n",
        "a 1\n# EOF\nb 1\n# EOF\n",
        "# TYPE c counter\nc_total 1\ng 1\nc_total{a=\"b\"} 2\n# EOF\n",
    ] {
        assert!(
            parse_openmetrics(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
    let histogram = "# TYPE h histogram\nh_bucket{a=\"x\",le=\"1.0\"} 1\n\
                     h_bucket{a=\"x\",le=\"+Inf\"} 2\nh_sum{a=\"x\"} 3.5\nh_count{a=\"x\"} 2\n";
    let parsed = parse(histogram).unwrap();
    assert_eq!(parsed.value("h_bucket", &[("le", "1.0")]), Some(1.0));
    assert!(parse_openmetrics(&format!("{histogram}# EOF\n")).is_ok());
    for bad in [
        // No +Inf bucket.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        // Not cumulative.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        // Not ascending.
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        // _count is not +Inf's.
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        // No _sum.
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        // No le.
        "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
        // A sample named as the family.
        "# TYPE h histogram\nh 1\n",
        // Interleaved with another family.
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\ng 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be rejected");
    }
}
