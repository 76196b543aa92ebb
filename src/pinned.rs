//! A thread of its own, with a single-threaded runtime, for the tasks of one
//! connection: its transport (TLS, HTTP/2, websocket), the reading task and
//! the decoding task. On the process's multi-threaded runtime those tasks
//! wander between the cores, and a batch decrypted on one core is then
//! decoded on the other, every byte of it a cache miss; kept on one thread,
//! the batch is still in that core's cache when it is decoded.

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::Arc;

use tokio::runtime::{Builder, Handle, RuntimeFlavor};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::AbortOnDropHandle;

/// Where a connection's tasks run: a thread of their own, or, on a
/// single-threaded runtime (tests, where time may be paused), the
/// runtime at hand.
#[derive(Debug, Clone)]
pub struct Pinned {
    handle: Handle,
    /// Stops the thread when the last task's future has gone.
    stop: Option<Arc<DropGuard>>,
}

impl Pinned {
    /// A thread named `name` with a runtime of its own when the runtime at
    /// hand is multi-threaded; else the runtime at hand. Must be called
    /// within a runtime.
    pub fn start(name: String) -> std::io::Result<Self> {
        let current = Handle::current();
        if current.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Ok(Self {
                handle: current,
                stop: None,
            });
        }
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let token = CancellationToken::new();
        let stopped = token.clone();
        std::thread::Builder::new().name(name).spawn(move || {
            runtime.block_on(stopped.cancelled());
            // Whatever is still spawned there is dropped with the runtime.
            drop(runtime);
        })?;
        Ok(Self {
            handle,
            stop: Some(Arc::new(token.drop_guard())),
        })
    }

    /// Runs `task` there. The future returned, which can be awaited on any
    /// runtime, gives its output, or `None` when it was cancelled; it
    /// panics as the task did; dropping it aborts the task.
    pub fn spawn<F>(&self, task: F) -> impl Future<Output = Option<F::Output>> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let running = AbortOnDropHandle::new(self.handle.spawn(task));
        let keep = self.stop.clone();
        async move {
            let ended = running.await;
            drop(keep);
            match ended {
                Ok(output) => Some(output),
                Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
                Err(_) => None,
            }
        }
    }

    /// Whether the tasks run on a thread of their own.
    pub fn is_own_thread(&self) -> bool {
        self.stop.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_run_on_the_thread_and_their_outputs_and_panics_come_back() {
        let pinned = Pinned::start("pinned-test".into()).unwrap();
        assert!(pinned.is_own_thread());
        let names: Vec<_> = (0..8)
            .map(|_| pinned.spawn(async { thread_name() }))
            .collect();
        for name in names {
            assert_eq!(name.await.as_deref(), Some("pinned-test"));
        }
        let panicked = tokio::spawn(pinned.spawn(async { panic!("boom in a pinned task") }));
        let error = panicked.await.unwrap_err();
        let payload = error.into_panic();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"boom in a pinned task")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_thread_ends_when_its_last_task_has_gone() {
        let pinned = Pinned::start("pinned-ending".into()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let dropped = pinned.spawn(async move {
            // Held until the task is dropped, with its runtime.
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(pinned);
        drop(dropped);
        // The task aborted and the thread's runtime gone: the sender dropped.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
        assert!(matches!(ended, Ok(Err(_))), "{ended:?}");
    }

    #[tokio::test]
    async fn on_a_single_threaded_runtime_tasks_stay_on_it() {
        let pinned = Pinned::start("unused".into()).unwrap();
        assert!(!pinned.is_own_thread());
        let here = thread_name();
        assert_eq!(pinned.spawn(async { thread_name() }).await, Some(here));
    }
}
