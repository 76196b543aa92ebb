//! Command-line flags and environment variables: the source's in
//! [`source`], the shared ones in [`exporter`], their value parsers in [`parse`]. The simulator's own are
//! in `sim::args`; the binary puts both together.

pub(crate) mod exporter;
pub(crate) mod legacy;
pub mod naming;
pub mod parse;
pub mod remote_write;
pub(crate) mod source;

use clap::Parser;

pub use exporter::CommonArgs;
pub use legacy::LegacyArgs;
pub use source::{SourceArgs, SourceKind};

/// The exporter's flags alone, without the simulator's subcommands.
#[derive(Debug, Parser)]
#[command(name = "cf-firehose-exporter", version, about, max_term_width = 100)]
pub struct ExporterCli {
    /// UAA and Firehose connection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Store, web and log settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The Go exporter's flags without effect here, and its `--no-` forms
    /// (last: their help heading is the last one).
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

#[cfg(test)]
mod tests {
    use super::parse::parse_size;
    use super::*;
    use crate::secret::Secret;
    use crate::source::firehose::firehose_url;
    use crate::source::uaa::token_url;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<ExporterCli, clap::Error> {
        ExporterCli::try_parse_from(
            std::iter::once("cf-firehose-exporter").chain(args.iter().copied()),
        )
    }

    #[test]
    fn the_flags_are_well_formed() {
        use clap::CommandFactory;
        ExporterCli::command().debug_assert();
    }

    #[test]
    fn firehose_url_schemes() {
        let u = |d| firehose_url(d, "prometheus").map(|u| u.to_string());
        assert_eq!(
            u("wss://doppler.sys:443").unwrap(),
            "wss://doppler.sys/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("https://doppler.sys:4443/").unwrap(),
            "wss://doppler.sys:4443/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("http://127.0.0.1:8081").unwrap(),
            "ws://127.0.0.1:8081/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("ws://tc/base").unwrap(),
            "ws://tc/base/firehose/prometheus?filter-type=metrics"
        );
        let err = u("ftp://doppler.sys").unwrap_err().to_string();
        assert_eq!(
            err,
            "--doppler.url: scheme \"ftp\" is not one of wss, https, ws, http"
        );
        assert!(
            u("not a url")
                .unwrap_err()
                .to_string()
                .starts_with("--doppler.url: ")
        );
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("1 M"), Ok(1 << 20));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn the_constructor_matches_the_flag_defaults() {
        let parsed = parse(&[
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=s",
            "--doppler.url=wss://tc",
        ])
        .unwrap()
        .source;
        let built = SourceArgs::new("https://uaa", "c", Secret::new("s"), "wss://tc");
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
        let common = parse(&[]).unwrap().common;
        assert_eq!(
            format!("{common:?}"),
            format!("{:?}", CommonArgs::default())
        );
        let resolved = built.resolve().unwrap();
        assert_eq!(resolved.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(resolved.max_retry_count, None);
        assert_eq!(resolved.max_frame_size, 4 << 20);
    }

    #[test]
    fn zero_idle_timeout_turns_it_off_and_zero_retries_mean_the_defaults() {
        let mut args = SourceArgs::new("https://uaa", "c", Secret::new("s"), "wss://tc");
        args.idle_timeout = Duration::ZERO;
        assert_eq!(args.resolve().unwrap().idle_timeout, None);
        // As a v5 or v6 job passes its defaults.
        let cli = parse(&[
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=s",
            "--doppler.url=wss://tc",
            "--doppler.min-retry-delay=0",
            "--doppler.max-retry-delay=0",
            "--doppler.max-retry-count=0",
        ])
        .unwrap();
        let resolved = cli.source.resolve().unwrap();
        assert_eq!(resolved.min_retry_delay, Duration::from_millis(500));
        assert_eq!(resolved.max_retry_delay, Duration::from_secs(60));
        assert_eq!(resolved.max_retry_count, None);
        args.max_retry_count = Some(3);
        args.min_retry_delay = Duration::from_secs(2);
        args.max_retry_delay = Duration::from_secs(1);
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.starts_with("--doppler.min-retry-delay: "), "{err}");
        args.max_retry_delay = Duration::ZERO;
        let resolved = args.resolve().unwrap();
        assert_eq!(resolved.max_retry_delay, Duration::from_secs(60));
        assert_eq!(resolved.max_retry_count, Some(3));
    }

    #[test]
    fn kingpins_no_forms_and_the_go_flags_without_effect() {
        let flag = |args: &[&str]| parse(args).unwrap().source.skip_ssl_verify;
        assert!(!flag(&["--skip-ssl-verify", "--no-skip-ssl-verify"]));
        assert!(flag(&["--no-skip-ssl-verify", "--skip-ssl-verify"]));
        let legacy = |args: &[&str]| parse(args).unwrap().source.use_legacy_firehose;
        assert!(!legacy(&[
            "--logging.use-legacy-firehose",
            "--no-logging.use-legacy-firehose"
        ]));
        let format = |args: &[&str]| parse(args).unwrap().common.log_format().to_owned();
        assert_eq!(format(&[]), "logfmt");
        assert_eq!(format(&["--log.in_json"]), "json");
        assert_eq!(format(&["--log.in_json", "--no-log.in_json"]), "logfmt");
        assert_eq!(format(&["--log.format", "logger:stderr"]), "logfmt");
        let v7 = parse(&[
            "--metrics.batch_size=-1",
            "--metrics.node_index=0",
            "--metrics.timer_rollup_buffer_size=16384",
            "--retro_compat.disable",
            "--no-retro_compat.disable",
            "--retro_compat.enable_delta",
            "--profiler.enable",
            "--no-profiler.enable",
        ])
        .unwrap();
        assert_eq!(
            v7.legacy.without_effect(),
            ["--metrics.batch_size", "--metrics.timer_rollup_buffer_size",]
        );
        // Under the native names, the compat scheme's flags mean nothing.
        assert_eq!(
            v7.common.naming.without_effect(),
            ["--retro_compat.enable_delta", "--metrics.node_index"]
        );
        assert!(parse(&[]).unwrap().legacy.without_effect().is_empty());
        assert!(
            parse(&[])
                .unwrap()
                .common
                .naming
                .without_effect()
                .is_empty()
        );
    }

    #[test]
    fn the_compat_scheme_takes_the_go_flags() {
        use crate::naming::Naming;
        let naming = |args: &[&str]| parse(args).unwrap().common.naming.naming();
        assert_eq!(naming(&[]), Ok(Naming::Native));
        assert_eq!(
            naming(&["--metrics.naming", "firehose_exporter"]),
            Ok(Naming::Compat {
                namespace: "firehose".into(),
                delta: false,
                node_index: "0".into()
            })
        );
        for delta in ["--metrics.enable-delta", "--retro_compat.enable_delta"] {
            let with = naming(&[
                "--metrics.naming=firehose_exporter",
                "--metrics.namespace=cf",
                "--metrics.node_index=3",
                delta,
            ]);
            let expected = Naming::Compat {
                namespace: "cf".into(),
                delta: true,
                node_index: "3".into(),
            };
            assert_eq!(with, Ok(expected), "{delta}");
        }
        let compat = parse(&[
            "--metrics.naming=firehose_exporter",
            "--metrics.namespace=x",
        ]);
        assert!(compat.unwrap().common.naming.without_effect().is_empty());
        for (namespace, problem) in [
            ("9lives", "is not a metric name"),
            ("fire-hose", "is not a metric name"),
            ("cf_firehose_exporter", "as the exporter's own metrics"),
        ] {
            let err = naming(&[
                "--metrics.naming=firehose_exporter",
                "--metrics.namespace",
                namespace,
            ])
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("--metrics.namespace: "), "{err}");
            assert!(err.contains(problem), "{err}");
        }
        assert!(parse(&["--metrics.naming", "go"]).is_err());
    }

    #[test]
    fn token_url_appends_path() {
        assert_eq!(
            token_url("https://uaa.sys/").unwrap().as_str(),
            "https://uaa.sys/oauth/token"
        );
        assert!(
            token_url("wss://uaa.sys")
                .unwrap_err()
                .to_string()
                .starts_with("--uaa.url: ")
        );
    }

    #[test]
    fn defaults_and_listen_address() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.common.listen_address, "0.0.0.0:9186".parse().unwrap());
        assert_eq!(cli.common.telemetry_path, "/metrics");
        assert_eq!(cli.common.expiration, Duration::from_secs(600));
        assert_eq!(cli.source.subscription_id, "prometheus");
        assert_eq!(cli.source.min_retry_delay, Duration::from_millis(500));
        let cli = parse(&["--doppler.metric-expiration", "1m30s"]).unwrap();
        assert_eq!(cli.common.expiration, Duration::from_secs(90));
    }

    /// Each default is declared once, in its `#[arg]`: the `Default` of
    /// the flags, the store's limits and the listener's limits agree with it.
    #[test]
    fn every_default_is_the_declared_one() {
        let declared = parse(&[]).unwrap().common;
        let defaults = CommonArgs::default();
        assert_eq!(format!("{defaults:?}"), format!("{declared:?}"));
        assert_eq!(defaults.max_series, 1_000_000);
        assert_eq!(defaults.log_format, "logfmt");
        assert_eq!(
            defaults.series_limits(),
            crate::store::SeriesLimits::default()
        );
        assert_eq!(
            defaults.http_limits(),
            crate::http::listener::Limits::default()
        );
        assert_eq!(
            crate::http::listener::Limits::default().idle_timeout,
            Duration::from_secs(90)
        );
    }

    #[test]
    fn bad_flags_name_themselves() {
        let err = parse(&["--metrics.expiration", "soon"])
            .unwrap_err()
            .to_string();
        assert!(
            err.lines().next().unwrap().contains("--metrics.expiration"),
            "{err}"
        );
        let err = parse(&["--web.listen-address", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(
            err.lines().next().unwrap().contains("--web.listen-address"),
            "{err}"
        );
        let err = parse(&[])
            .unwrap()
            .source
            .resolve()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--uaa.url: required (or FIREHOSE_EXPORTER_UAA_URL)");
    }

    /// Every flag of each generation of the Go exporter parses, as its
    /// jobs pass them, with kingpin's `--no-` forms, `--help` and `--version`.
    #[test]
    fn every_go_flag_of_every_generation_parses() {
        let web = [
            "--web.listen-address=:9186",
            "--web.telemetry-path=/metrics",
            "--web.auth.username=u",
            "--web.auth.password=p",
            "--web.tls.cert_file=/var/vcap/jobs/x/cert.pem",
            "--web.tls.key_file=/var/vcap/jobs/x/key.pem",
            "--skip-ssl-verify",
            "--log.level=info",
            "--filter.deployments=",
            "--filter.events=",
            "--metrics.namespace=firehose",
            "--metrics.environment=prod",
        ];
        let uaa = [
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=s",
            "--doppler.subscription-id=prometheus",
            "--doppler.idle-timeout=0",
            "--doppler.min-retry-delay=0",
            "--doppler.max-retry-delay=0",
            "--doppler.max-retry-count=0",
            "--doppler.metric-expiration=5m",
            "--metrics.cleanup-interval=2m",
            "--log.format=logger:stderr",
        ];
        let v5: Vec<&str> = [&web[..], &uaa, &["--doppler.url=wss://tc"]].concat();
        let v6: Vec<&str> = [
            &web[..],
            &uaa,
            &[
                "--logging.url=https://log-stream",
                "--logging.use-legacy-firehose",
                "--no-logging.use-legacy-firehose",
            ],
        ]
        .concat();
        let v7: Vec<&str> = [
            &web[..],
            &[
                "--logging.url=rlp:8082",
                "--logging.tls.ca=/ca.pem",
                "--logging.tls.cert=/cert.pem",
                "--logging.tls.key=/key.pem",
                "--metrics.expiration=10m",
                "--metrics.batch_size=-1",
                "--metrics.shard_id=firehose_exporter",
                "--metrics.node_index=0",
                "--metrics.timer_rollup_buffer_size=16384",
                "--retro_compat.disable",
                "--no-retro_compat.disable",
                "--retro_compat.enable_delta",
                "--no-retro_compat.enable_delta",
                "--profiler.enable",
                "--no-profiler.enable",
                "--no-skip-ssl-verify",
                "--log.in_json",
                "--no-log.in_json",
            ],
        ]
        .concat();
        for (generation, flags) in [("v5", v5), ("v6", v6), ("v7", v7)] {
            if let Err(error) = parse(&flags) {
                panic!("{generation}: {error}");
            }
        }
        use clap::error::ErrorKind;
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
    }

    /// The transport follows --source, else the URL flags, as each
    /// generation of the Go exporter set them.
    #[test]
    fn the_transport_is_chosen_or_inferred() {
        use crate::source::Endpoint;
        let uaa = [
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=s",
        ];
        let resolve = |more: &[&str]| {
            let args: Vec<&str> = uaa.iter().chain(more).copied().collect();
            parse(&args).unwrap().source.resolve()
        };
        let endpoint = |more: &[&str]| resolve(more).unwrap().endpoint;
        let gateway = |url: &str| Endpoint::Gateway(url.parse().unwrap());
        let firehose = |url: &str| Endpoint::Firehose(url.parse().unwrap());
        assert_eq!(
            endpoint(&["--logging.url=https://log-stream.sys.example.com"]),
            gateway(
                "https://log-stream.sys.example.com/v2/read?shard_id=firehose_exporter&counter&gauge&timer"
            )
        );
        assert_eq!(
            endpoint(&[
                "--source=gateway",
                "--logging.url=http://127.0.0.1:8088",
                "--metrics.shard_id=prom"
            ]),
            gateway("http://127.0.0.1:8088/v2/read?shard_id=prom&counter&gauge&timer")
        );
        assert_eq!(
            endpoint(&[
                "--logging.url=https://doppler.sys",
                "--logging.use-legacy-firehose"
            ]),
            firehose("wss://doppler.sys/firehose/prometheus?filter-type=metrics")
        );
        assert_eq!(
            endpoint(&["--doppler.url=wss://doppler.sys"]),
            firehose("wss://doppler.sys/firehose/prometheus?filter-type=metrics")
        );
        let error = |more: &[&str]| resolve(more).unwrap_err().to_string();
        // The RLP: inferred from a URL without a scheme, or from client
        // certificates; each file is read at once.
        for (rlp, expected) in [
            (
                &["--logging.url=reverse-log-proxy.service.cf.internal:8082"][..],
                "--logging.tls.cert: required to read the RLP",
            ),
            (
                &[
                    "--logging.url=https://rlp:8082",
                    "--logging.tls.cert=c.pem",
                    "--logging.tls.key=k.pem",
                ],
                "--logging.tls.cert: c.pem: ",
            ),
            (
                &["--source=rlp", "--doppler.url=wss://tc"],
                "--logging.url: required to read the RLP",
            ),
        ] {
            let e = error(rlp);
            assert!(e.starts_with(expected), "{e}");
        }
        let dir =
            std::env::temp_dir().join(format!("cf-firehose-exporter-cli-{}", std::process::id()));
        let files = crate::sim::pki::SimPki::generate("test CA")
            .unwrap()
            .write_client_files(&dir)
            .unwrap();
        let ca = format!("--logging.tls.ca={}", files.ca.as_ref().unwrap().display());
        let cert = format!("--logging.tls.cert={}", files.cert.display());
        let key = format!("--logging.tls.key={}", files.key.display());
        let certificates = [ca.as_str(), cert.as_str(), key.as_str()];
        fn with<'a>(certificates: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
            certificates.iter().chain(more).copied().collect()
        }
        let Endpoint::Rlp(rlp) = endpoint(&with(&certificates, &["--logging.url=10.0.4.7:8082"]))
        else {
            panic!("not the RLP");
        };
        assert_eq!(rlp.address, "10.0.4.7:8082");
        assert_eq!(rlp.server_name, "reverselogproxy");
        assert_eq!(rlp.shard_id, "firehose_exporter");
        assert_eq!(rlp.tls, files);
        let rlp_without_uaa = parse(&with(&certificates, &["--logging.url=https://rlp:8082"]))
            .unwrap()
            .source
            .resolve()
            .unwrap();
        assert!(rlp_without_uaa.uaa.is_none(), "the RLP takes no token");
        assert!(
            error(&with(
                &certificates,
                &[
                    "--logging.url=rlp:8082",
                    "--logging.tls.server-name=not a name"
                ]
            ))
            .starts_with("--logging.tls.server-name: ")
        );
        let mut no_ca = with(&certificates, &["--logging.url=rlp:8082"]);
        no_ca.remove(0);
        assert!(error(&no_ca).starts_with("--logging.tls.ca: required"));
        let key_as_cert = format!("--logging.tls.cert={}", files.key.display());
        let mut bad = with(&certificates, &["--logging.url=rlp:8082"]);
        bad[1] = &key_as_cert;
        assert!(error(&bad).starts_with(&format!("--logging.tls.cert: {}: ", files.key.display())));
        assert!(
            error(&["--doppler.url=wss://tc", "--logging.url=https://gw"])
                .starts_with("--source: both --doppler.url and --logging.url")
        );
        assert!(error(&["--source=gateway"]).starts_with("--logging.url: required"));
        assert!(error(&["--logging.url=ftp://gw"]).starts_with("--logging.url: "));
        assert!(error(&[]).starts_with("--doppler.url: required"));
    }

    #[test]
    fn secrets_do_not_show() {
        let cli = parse(&[
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=hunter2",
            "--doppler.url=wss://tc",
        ])
        .unwrap();
        let resolved = cli.source.resolve().unwrap();
        assert!(!format!("{cli:?}{resolved:?}").contains("hunter2"));
        assert_eq!(resolved.uaa.unwrap().client_secret.expose(), "hunter2");
    }
}
