//! The single writer of the transport: one task owns the output, encodes messages into
//! one buffer, writes whatever is queued in one `write` and flushes only when its queue
//! is empty.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use quarry_protocol::Outgoing;

#[derive(Debug)]
enum Command {
    Send(Outgoing),
    Close(oneshot::Sender<()>),
}

/// Handle for queueing messages to the writer. Cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Command>,
}

impl Outbox {
    /// Queues `msg`. Messages queued from one thread are written in order; a message
    /// queued after the writer closed is dropped.
    pub fn send(&self, msg: Outgoing) {
        let _ = self.tx.send(Command::Send(msg));
    }

    /// Writes everything queued so far, flushes, and stops the writer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Most bytes gathered before one write.
const MAX_BATCH: usize = 1 << 20;

/// Starts the writer task on `out`. `broken` is cancelled if the output fails (the host
/// closed our stdout); later messages are then discarded.
pub fn spawn_writer<W>(
    mut out: W,
    broken: CancellationToken,
) -> (Outbox, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let task = tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut closing: Option<oneshot::Sender<()>> = None;
        let mut failed = false;
        while let Some(cmd) = rx.recv().await {
            let mut next = Some(cmd);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Send(msg) => msg.encode(&mut buf),
                    Command::Close(ack) => {
                        closing = Some(ack);
                        break;
                    }
                }
                if buf.len() >= MAX_BATCH {
                    break;
                }
                next = rx.try_recv().ok();
            }
            if !failed
                && !buf.is_empty()
                && let Err(e) = out.write_all(&buf).await
            {
                tracing::warn!(error = %e, "cannot write to the output; discarding further messages");
                failed = true;
                broken.cancel();
            }
            buf.clear();
            if buf.capacity() > 4 * MAX_BATCH {
                buf.shrink_to(64 * 1024);
            }
            if !failed
                && (rx.is_empty() || closing.is_some())
                && let Err(e) = out.flush().await
            {
                tracing::warn!(error = %e, "cannot flush the output");
                failed = true;
                broken.cancel();
            }
            if let Some(ack) = closing.take() {
                let _ = ack.send(());
                return;
            }
        }
    });
    (Outbox { tx }, task)
}
