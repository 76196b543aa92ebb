//! A task the exporter needs that panics stops the exporter with an error
//! naming it. Alone in its test binary: the panic is injected through an
//! environment variable that debug builds read at start.

mod common;

use std::time::Duration;

use cf_firehose_exporter::app::{Exporter, RunError};
use cf_firehose_exporter::sim::Foundation;

#[tokio::test]
async fn a_panicking_task_stops_the_exporter_with_an_error() {
    // Sound here: set before anything of the exporter starts, and the only
    // other test of this binary (the shared parser's) never reads the
    // environment.
    unsafe { std::env::set_var("CF_FIREHOSE_EXPORTER_TEST_PANIC", "ingestion") };
    let any = "127.0.0.1:0".parse().unwrap();
    let foundation = Foundation::start(any, any, Default::default(), Default::default())
        .await
        .unwrap();
    let exporter = Exporter::start(common::config_for(&foundation, Duration::from_secs(600)))
        .await
        .unwrap();
    let result = tokio::time::timeout(common::PATIENCE, exporter.wait())
        .await
        .expect("the exporter stops by itself");
    match result {
        Err(RunError::Task { task, problem }) => {
            assert_eq!(task, "a test task");
            assert_eq!(problem, "panicked: injected panic in ingestion");
        }
        other => panic!("expected a failed task, got {other:?}"),
    }
}
