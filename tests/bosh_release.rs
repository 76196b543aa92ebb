//! The BOSH release without a Director: its template tests (Ruby, with a
//! stand-in for bosh-template), the bpm config it renders started as bpm
//! would start it against the simulator, and its packaging script building
//! the binary from the vendored source tarball with cargo's network off.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cf_firehose_exporter::sim::Foundation;

const RELEASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bosh-release");
/// Where BOSH puts a job's rendered templates.
const JOB_CONFIG: &str = "/var/vcap/jobs/cf-firehose-exporter/config";
/// Where BOSH puts the package.
const PACKAGE_BINARY: &str = "/var/vcap/packages/cf-firehose-exporter/bin/cf-firehose-exporter";

fn ruby() -> Option<&'static str> {
    common::required_tool("ruby", "CF_FIREHOSE_EXPORTER_REQUIRE_RUBY")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cf-firehose-exporter-bosh-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_template_tests_pass() {
    let Some(ruby) = ruby() else { return };
    let output = Command::new(ruby)
        .arg(Path::new(RELEASE).join("tests/template_test.rb"))
        .output()
        .expect("ruby runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(" 0 failures, 0 errors"), "{report}");
}

#[derive(Debug, serde::Deserialize)]
struct Bpm {
    processes: Vec<BpmProcess>,
}

#[derive(Debug, serde::Deserialize)]
struct BpmProcess {
    name: String,
    executable: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Renders the job with `properties` (JSON) into `dir`, as the Director
/// would; the rendered files land under `dir/config`.
fn render(properties: serde_json::Value, dir: &Path) -> Bpm {
    let input = dir.join("input.json");
    let document = serde_json::json!({ "properties": properties, "spec": { "index": 0 } });
    std::fs::write(&input, document.to_string()).unwrap();
    let output = Command::new(ruby().expect("ruby found before"))
        .arg(Path::new(RELEASE).join("tests/render.rb"))
        .arg(&input)
        .arg(dir)
        .output()
        .expect("ruby runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dir.join("config/bpm.yml")).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("bpm.yml: {e}\n{text}"))
}

/// The rendered bpm config, run as bpm runs it (its executable, arguments
/// and environment, nothing else), with the job's and the package's paths
/// moved to where the test has them, streams from the simulated RLP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_bpm_config_starts_the_binary_against_the_simulator() {
    if ruby().is_none() {
        return;
    }
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let files = foundation.rlp_client_files().unwrap();
    let pem = |path: &Path| std::fs::read_to_string(path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = scratch("bpm");
    let bpm = render(
        serde_json::json!({
            "firehose_exporter": {
                "logging": {
                    "url": foundation.rlp_address(),
                    "tls": {
                        "ca": pem(files.ca.as_ref().unwrap()),
                        "cert": pem(&files.cert),
                        "key": pem(&files.key),
                    },
                },
                "doppler": { "subscription_id": "bosh-test" },
                "metrics": { "environment": "bosh" },
                "web": { "port": port },
            }
        }),
        &dir,
    );
    assert_eq!(bpm.processes.len(), 1);
    let process = &bpm.processes[0];
    assert_eq!(process.name, "cf-firehose-exporter");
    assert_eq!(process.executable, PACKAGE_BINARY);
    assert!(process.args.is_empty(), "{:?}", process.args);
    let config = dir.join("config");
    let mut command = common::binary::command();
    for (key, value) in &process.env {
        let value = value.replace(JOB_CONFIG, &config.display().to_string());
        command.env(key, value);
    }
    let started = common::binary::start(&mut command).await;
    assert_eq!(started.address, format!("0.0.0.0:{port}"));
    assert!(
        foundation
            .rlp
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter subscribed"
    );
    assert_eq!(foundation.rlp.requests()[0].shard_id, "bosh-test");
    let counter = common::v2_counter("bosh_job", 9);
    assert_eq!(foundation.rlp.publish(&[counter]).await, 1);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = common::eventually("the counter served", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        body.contains("bosh_job_total{").then_some(body)
    })
    .await;
    let parsed = common::exposition::parse(&body).unwrap();
    assert_eq!(
        parsed.value("bosh_job_total", &[("environment", "bosh")]),
        Some(9.0)
    );
    assert!(body.contains("cf_firehose_exporter_up 1\n"), "{body}");
}

/// The packaging script, given a stand-in for the Rust package's
/// `compile.env` (this machine's toolchain, an empty `CARGO_HOME`) and a
/// proxy that refuses every connection, builds the binary from the vendored
/// source tarball into `BOSH_INSTALL_TARGET`. It compiles the exporter from
/// scratch, so it runs where `CF_FIREHOSE_EXPORTER_BOSH_PACKAGING` is set (CI
/// sets it). The release profile's LTO and optimisation are turned down
/// through cargo's environment to keep that build short; the script and its
/// flags are the stemcell's.
#[test]
fn packaging_builds_the_binary_from_the_vendored_tarball_offline() {
    if std::env::var_os("CF_FIREHOSE_EXPORTER_BOSH_PACKAGING").is_none() {
        eprintln!("SKIPPED: set CF_FIREHOSE_EXPORTER_BOSH_PACKAGING=1 to compile the BOSH package");
        return;
    }
    let dir = scratch("packaging");
    let compile = dir.join("compile");
    let blobs = compile.join("cf-firehose-exporter");
    // The blob, built twice and compared.
    let output = Command::new(Path::new(RELEASE).join("scripts/build-source-tarball"))
        .arg("--check")
        .arg(&blobs)
        .output()
        .expect("the script runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("-src.tar.gz sha256:"), "{said}");

    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap().trim().to_owned();
    let cargo_home = dir.join("cargo-home");
    std::fs::create_dir_all(&cargo_home).unwrap();
    let compile_env = dir.join("compile.env");
    std::fs::write(
        &compile_env,
        format!(
            "export RUST_HOME={sysroot}\nexport CARGO_HOME={}\nexport PATH=$RUST_HOME/bin:$PATH\n",
            cargo_home.display()
        ),
    )
    .unwrap();
    let install = dir.join("install");
    std::fs::create_dir_all(&install).unwrap();
    let status = Command::new("bash")
        .arg(Path::new(RELEASE).join("packages/cf-firehose-exporter/packaging"))
        .current_dir(&compile)
        .env("RUST_COMPILE_ENV", &compile_env)
        .env("BOSH_COMPILE_TARGET", &compile)
        .env("BOSH_INSTALL_TARGET", &install)
        // Any download would go through this proxy, which nothing answers.
        .env("CARGO_HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "64")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WRAPPER")
        .status()
        .expect("bash runs");
    assert!(status.success(), "packaging failed");
    let binary = install.join("bin/cf-firehose-exporter");
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("the installed binary runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("cf-firehose-exporter {}", env!("CARGO_PKG_VERSION"))
    );
    // Nothing was fetched: neither the toolchain's CARGO_HOME nor the
    // compile's own holds a registry.
    assert!(!cargo_home.join("registry").exists());
    assert!(compile.join(".cargo-home").exists());
    assert!(!compile.join(".cargo-home/registry").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
