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
    assert_eq!(code, 1);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--doppler.url"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"));
}

#[test]
fn missing_uaa_url_is_named() {
    let (code, _, stderr) = run(&mut exporter());
    assert_eq!(code, 1);
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
