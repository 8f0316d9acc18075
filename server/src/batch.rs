//! Opportunistic batching: concurrent requests to a store share one round trip.
//!
//! A few *lanes* take jobs from one queue. An idle lane takes every job queued
//! at that moment (up to a maximum) and runs them together. At low load a job
//! finds an idle lane and runs alone at once, with no timer and no added wait;
//! under load, jobs that arrive while every lane is busy share the next run.
//! Jobs carry their own reply channels.

use std::{future::Future, sync::Arc};

use tokio::sync::{Mutex, mpsc};

/// A queue of jobs of type `J` served by batching lanes; clones share the
/// lanes, which stop when the last clone is dropped.
pub struct Batcher<J> {
    queue: mpsc::Sender<J>,
}

impl<J> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<J: Send + 'static> Batcher<J> {
    /// Starts `lanes` lanes, each running `run` on up to `max_batch` queued jobs at a time.
    pub fn spawn<F, Fut>(lanes: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (lanes, max_batch) = (lanes.max(1), max_batch.max(1));
        let (queue, receiver) = mpsc::channel(max_batch * lanes * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..lanes {
            let (receiver, run) = (Arc::clone(&receiver), run.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::with_capacity(max_batch);
                    if receiver.lock().await.recv_many(&mut batch, max_batch).await == 0 {
                        return;
                    }
                    // A task of its own: a run that panics fails its own jobs
                    // (their reply channels drop) and the lane goes on.
                    if let Err(e) = tokio::spawn(run(batch)).await {
                        tracing::error!(error = %e, "a batch run failed");
                    }
                }
            });
        }
        Self { queue }
    }

    /// Queues `job`, waiting while the queue is full; gives it back if the
    /// lanes have stopped.
    pub async fn submit(&self, job: J) -> Result<(), J> {
        self.queue.send(job).await.map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn every_job_is_answered_and_busy_lanes_batch_what_queues_up() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let batcher = Batcher::spawn(1, 64, move |jobs: Vec<(u32, oneshot::Sender<u32>)>| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                for (n, reply) in jobs {
                    let _ = reply.send(n * 2);
                }
            }
        });
        let answers = (0..100u32).map(|n| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let (reply, answer) = oneshot::channel();
                batcher.submit((n, reply)).await.map_err(|_| "stopped").expect("lanes run");
                answer.await.expect("answered")
            })
        });
        let answers: Vec<u32> =
            futures::future::join_all(answers).await.into_iter().map(|a| a.expect("task")).collect();
        assert_eq!(answers, (0..100).map(|n| n * 2).collect::<Vec<_>>());
        let runs = runs.load(Ordering::Relaxed);
        assert!(runs < 100, "jobs queued behind a busy lane share a run: {runs} runs for 100 jobs");
    }
}
