//! Interrupt, restart, death, shutdown and drop of a real kernel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inloop_doc::Output;
use inloop_kernel::{Error, ExecEvent, InterruptMode, Kernel, ReplyStatus};

use crate::{assert_gone, python_spec, run, start};

async fn interrupt_a_sleep(mode: InterruptMode) {
    let mut spec = python_spec();
    spec.interrupt_mode = mode;
    let kernel = Arc::new(start(spec).await);
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn({
        let kernel = kernel.clone();
        async move {
            let code = "import time\nprint('sleeping', flush=True)\ntime.sleep(100)";
            kernel.execute(code, sender).await
        }
    });
    assert!(matches!(
        events.recv().await,
        Some(ExecEvent::Started { .. })
    ));
    // Into the sleep: it said so.
    let said = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the cell prints before it sleeps");
    assert!(
        matches!(&said, Some(ExecEvent::Output(Output::Stream { text, .. })) if text == "sleeping\n"),
        "{said:?}"
    );

    let asked = Instant::now();
    kernel.interrupt().await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .expect("the interrupted execution ends within 2 s")
        .unwrap()
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(reply.status, ReplyStatus::Error);
    let mut interrupted = false;
    while let Some(event) = events.recv().await {
        if let ExecEvent::Output(Output::Error { ename, .. }) = event {
            interrupted |= ename == "KeyboardInterrupt";
        }
    }
    assert!(interrupted, "a KeyboardInterrupt was reported");

    // The kernel goes on.
    let (reply, _) = run(&*kernel, "1").await.unwrap();
    assert_eq!(reply.status, ReplyStatus::Ok);
}

#[tokio::test]
async fn interrupt_by_signal() {
    interrupt_a_sleep(InterruptMode::Signal).await;
}

#[tokio::test]
async fn interrupt_by_message() {
    interrupt_a_sleep(InterruptMode::Message).await;
}

#[tokio::test]
async fn restart_death_shutdown_and_drop() {
    let kernel = start(python_spec()).await;
    let (reply, _) = run(&kernel, "x = 41").await.unwrap();
    assert_eq!(reply.execution_count, Some(1));

    // A restart is a fresh process: a fresh namespace, counting from 1 again.
    let first = kernel.pid().unwrap();
    kernel.restart().await.unwrap();
    assert_gone(first).await;
    let (reply, events) = run(&kernel, "x").await.unwrap();
    assert_eq!(reply.status, ReplyStatus::Error);
    assert_eq!(reply.execution_count, Some(1));
    assert!(events.iter().any(|event| matches!(
        event,
        ExecEvent::Output(Output::Error { ename, .. }) if ename == "NameError"
    )));

    // The process exits in the middle of a run: the run fails promptly.
    let asked = Instant::now();
    let died = run(&kernel, "print('bye', flush=True)\nimport os\nos._exit(1)").await;
    let Err(Error::KernelDied { reason, .. }) = died else {
        panic!("{died:?}")
    };
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(reason, "exit status: 1");
    assert_eq!(kernel.pid(), None);
    let again = run(&kernel, "1").await;
    assert!(matches!(again, Err(Error::KernelDied { .. })), "{again:?}");

    // And a restart brings it back.
    kernel.restart().await.unwrap();
    let (reply, _) = run(&kernel, "1+1").await.unwrap();
    assert_eq!(reply.status, ReplyStatus::Ok);

    // Shut down: the process exits (when asked, not killed) and runs are refused.
    let pid = kernel.pid().unwrap();
    let asked = Instant::now();
    kernel.shutdown().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_gone(pid).await;
    assert!(matches!(run(&kernel, "1").await, Err(Error::ShutDown)));
    assert!(matches!(kernel.interrupt().await, Err(Error::ShutDown)));

    // Dropping the kernel kills its process.
    kernel.restart().await.unwrap();
    let pid = kernel.pid().unwrap();
    drop(kernel);
    assert_gone(pid).await;
}
