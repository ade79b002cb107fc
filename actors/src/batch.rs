//! Group commit for small store writes that many tasks make at once (the session outbox's
//! claims and outcomes): each caller hands in one item and waits for its own answer, and
//! one task writes whatever has queued up meanwhile in a single store call, so a burst of
//! N sessions costs one transaction (one fsync) instead of N. Like the journal writer,
//! it never waits to fill a batch: a batch forms while the previous write is in flight.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;

type Request<I, O> = (I, oneshot::Sender<Result<O, StoreError>>);

/// Queues items for one writing task; cheap to share behind an `Arc`.
pub(crate) struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Request<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the writing task. `write` gets up to `max` items and answers one output per
    /// item, in order; an error is every caller's answer. The task ends when the batcher is
    /// dropped and the queue is empty.
    pub(crate) fn start<F, Fut>(max: usize, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send,
    {
        let (queue, mut rx) = mpsc::unbounded_channel::<Request<I, O>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
                let n = items.len();
                match write(items).await {
                    Ok(outputs) if outputs.len() == n => {
                        for (reply, out) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(out));
                        }
                    }
                    Ok(outputs) => {
                        let e = StoreError::Unavailable(format!(
                            "a batch of {n} answered {} results",
                            outputs.len()
                        ));
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues `item` and waits for its batch to be written.
    pub(crate) async fn run(&self, item: I) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| StoreError::Unavailable("the batch writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the batch writer has stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_writes_and_each_gets_its_own_answer() {
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&writes);
        let batcher = Arc::new(Batcher::start(64, move |items: Vec<u32>| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(items.into_iter().map(|i| i * 10).collect())
            }
        }));
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { (i, b.run(i).await) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.unwrap();
            assert_eq!(answer, Ok(i * 10));
        }
        let writes = writes.load(Ordering::SeqCst);
        assert!(
            writes < 200,
            "200 items in {writes} writes: nothing was batched"
        );
    }

    #[tokio::test]
    async fn a_failed_write_is_every_callers_error_and_batches_are_bounded() {
        let batcher = Arc::new(Batcher::start(3, |items: Vec<u32>| async move {
            assert!(items.len() <= 3, "a batch of {}", items.len());
            if items.contains(&7) {
                Err(StoreError::Unavailable("down".into()))
            } else {
                Ok(items)
            }
        }));
        let calls: Vec<_> = (0..20u32)
            .map(|i| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { (i, b.run(i).await) })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        let failed: Vec<u32> = answers
            .iter()
            .filter_map(|(i, answer)| answer.is_err().then_some(*i))
            .collect();
        assert!(failed.contains(&7));
        assert!(failed.len() <= 3, "only 7's batch fails: {failed:?}");
        for (i, answer) in answers {
            if !failed.contains(&i) {
                assert_eq!(answer, Ok(i));
            }
        }
    }
}
