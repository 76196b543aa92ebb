//! The binary's command line: bad flags fail with one line naming them, and
//! secrets never show.

use std::process::Command;

fn exporter() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cf-firehose-exporter"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FIREHOSE_EXPORTER_") {
            command.env_remove(key);
        }
    }
    // The Go v6's variable, without the prefix.
    command.env_remove("USE_LEGACY_FIREHOSE");
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_duration_fails_with_one_line_naming_the_flag() {
    let (code, _, stderr) = run(exporter().args(["--metrics.expiration", "soon"]));
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--metrics.expiration"), "{stderr}");
}

#[test]
fn a_bad_scheme_fails_with_one_line_and_no_secret() {
    let (code, _, stderr) = run(exporter().args([
        "--uaa.url=https://uaa.example.com",
        "--uaa.client-id=exporter",
        "--uaa.client-secret=s3cr3t-value",
        "--doppler.url=ftp://doppler.example.com",
    ]));
    assert_eq!(code, 2, "a flag mistake exits as clap's own errors do");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--doppler.url"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"));
}

#[test]
fn missing_uaa_url_is_named() {
    let (code, _, stderr) = run(&mut exporter());
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        "error: --uaa.url: required (or FIREHOSE_EXPORTER_UAA_URL)"
    );
}

#[test]
fn help_lists_flags_with_environment_variables_and_hides_the_secret() {
    let (code, stdout, _) = run(exporter()
        .arg("--help")
        .env("FIREHOSE_EXPORTER_UAA_CLIENT_SECRET", "topsecret"));
    assert_eq!(code, 0);
    for flag in [
        "--uaa.url",
        "--uaa.client-id",
        "--uaa.client-secret",
        "--doppler.url",
        "--doppler.subscription-id",
        "--metrics.expiration",
        "--web.listen-address",
        "--web.telemetry-path",
        "FIREHOSE_EXPORTER_DOPPLER_URL",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from --help");
    }
    assert!(!stdout.contains("topsecret"));
}

#[test]
fn giving_up_after_max_retry_count_exits_non_zero_with_one_clear_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, stderr) = run(exporter().args([
        "--uaa.url",
        &format!("http://{closed}"),
        "--uaa.client-id",
        "c",
        "--uaa.client-secret",
        "s3cr3t-value",
        "--doppler.url",
        &format!("ws://{closed}"),
        "--doppler.max-retry-count",
        "2",
        "--doppler.min-retry-delay",
        "10ms",
        "--web.listen-address",
        "127.0.0.1:0",
    ]));
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "error: giving up after 2 failed attempts in a row (--doppler.max-retry-count); \
             last error: UAA unreachable"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");
}

/// The flags a start needs, pointing at nothing that answers.
const REQUIRED: [&str; 4] = [
    "--uaa.url=http://127.0.0.1:9",
    "--uaa.client-id=exporter",
    "--uaa.client-secret=s3cr3t-value",
    "--doppler.url=ws://127.0.0.1:9",
];

/// Runs with `args` after the required flags: one line naming `flag`, exit 2.
fn refused(args: &[&str], flag: &str) {
    let (code, stdout, stderr) = run(exporter()
        .args(REQUIRED)
        .args(args)
        .args(["--web.listen-address", "127.0.0.1:0"]));
    assert_eq!(code, 2, "{args:?}: {stderr}{stdout}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(flag), "{args:?}: {stderr}");
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");
}

#[test]
fn every_bad_value_is_one_line_naming_its_flag_and_exit_code_2() {
    refused(&["--metrics.expiration", "-5s"], "--metrics.expiration");
    refused(&["--metrics.expiration", "0s"], "--metrics.expiration");
    refused(
        &["--doppler.max-retry-count", "-1"],
        "--doppler.max-retry-count",
    );
    refused(&["--metrics.max-series", "-3"], "--metrics.max-series");
    refused(&["--uaa.timeout", "0s"], "--uaa.timeout");
    refused(&["--web.idle-timeout", "0s"], "--web.idle-timeout");
    refused(
        &["--web.read-header-timeout", "-1s"],
        "--web.read-header-timeout",
    );
    refused(
        &["--doppler.max-frame-size", "2GiB"],
        "--doppler.max-frame-size",
    );
    // Caught after clap, by the filters: the same shape and exit code.
    refused(
        &["--filter.metric-names", "(unclosed"],
        "--filter.metric-names",
    );
    refused(&["--filter.events", "Nonsense"], "--filter.events");
}

#[test]
fn telemetry_paths_that_would_clash_or_match_other_paths_are_refused() {
    for path in [
        "/-/ready",
        "/-/healthy",
        "/:x",
        "/*x",
        "/m{",
        "/{x}",
        "/",
        "//m",
        "metrics",
    ] {
        refused(&["--web.telemetry-path", path], "--web.telemetry-path");
    }
}

#[test]
fn a_bad_value_given_to_demo_is_a_flag_mistake_too() {
    let (code, _, stderr) = run(exporter().args([
        "demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--filter.metric-names",
        "(unclosed",
    ]));
    assert_eq!(code, 2, "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: --filter.metric-names: "),
        "{stderr}"
    );
}

/// What a Go v7 BOSH job sets for its transport, with a certificate file
/// that is not there: one line naming the flag and the file. (With real
/// files the same environment streams from the RLP: tests/rlp.rs.)
#[test]
fn a_missing_certificate_file_of_a_v7_job_is_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("cf-firehose-exporter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "").unwrap();
    let v7 = |ca: &str, cert: &std::path::Path| {
        let mut command = exporter();
        command
            .env("FIREHOSE_EXPORTER_LOGGING_URL", "q-s0.log-api.cf.bosh:8082")
            .env("FIREHOSE_EXPORTER_LOGGING_TLS_CA", ca)
            .env("FIREHOSE_EXPORTER_LOGGING_TLS_CERT", cert)
            .env("FIREHOSE_EXPORTER_LOGGING_TLS_KEY", &key)
            .env("FIREHOSE_EXPORTER_SHARD_ID", "firehose_exporter")
            .env("FIREHOSE_EXPORTER_METRICS_ENVIRONMENT", "prod");
        run(&mut command)
    };
    let (code, _, stderr) = v7("/var/vcap/jobs/x/config/ca.crt", &cert);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: --logging.tls.cert: {}: no PEM certificate in the file",
            cert.display()
        )),
        "{stderr}"
    );
    let missing = dir.join("nowhere.crt");
    let (code, _, stderr) = v7("/var/vcap/jobs/x/config/ca.crt", &missing);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: --logging.tls.cert: {}: ",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("no such file"), "{stderr}");
}

#[test]
fn two_transports_at_once_are_one_line_asking_which() {
    let (code, _, stderr) = run(exporter().args([
        "--uaa.url=https://uaa",
        "--uaa.client-id=c",
        "--uaa.client-secret=s",
        "--doppler.url=wss://doppler",
        "--logging.url=https://log-stream",
    ]));
    assert_eq!(code, 2);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--source: both --doppler.url and --logging.url"),
        "{stderr}"
    );
}

#[test]
fn remote_write_mistakes_are_one_line_naming_the_flag_without_the_password() {
    refused(&["--web.disable-exposition"], "--web.disable-exposition");
    refused(
        &["--remote-write.url=ftp://store.example.com/write"],
        "--remote-write.url",
    );
    // Credentials in the address are left out of the message.
    refused(
        &["--remote-write.url=gopher://user:s3cr3t-value@store.example.com/"],
        "--remote-write.url",
    );
    let url = "--remote-write.url=http://127.0.0.1:9/api/v1/write";
    refused(
        &[url, "--remote-write.batch-size=0"],
        "--remote-write.batch-size",
    );
    refused(
        &[url, "--remote-write.username=exporter"],
        "--remote-write.password",
    );
    refused(
        &[url, "--remote-write.password=s3cr3t-value"],
        "--remote-write.username",
    );
    refused(
        &[url, "--remote-write.password-file=/nonexistent/password"],
        "--remote-write.password-file",
    );
    refused(
        &[url, "--remote-write.tls.cert-file=/nonexistent/cert.pem"],
        "--remote-write.tls.key-file",
    );
    refused(
        &[url, "--remote-write.external-labels=no-equals-sign"],
        "--remote-write.external-labels",
    );
    refused(
        &[url, "--remote-write.external-labels=exporter_shard=a"],
        "--remote-write.external-labels",
    );
    refused(&[url, "--remote-write.shard="], "--remote-write.shard");
}
