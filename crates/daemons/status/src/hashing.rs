//! Where passwords are hashed: two threads of the page's own, never the runtime's
//! blocking pool.
//!
//! Why: argon2 allocates 19 MiB for each hash. On tokio's blocking pool successive hashes
//! land on whichever of its many threads is free, and glibc keeps a freed block in the
//! arena of the thread that used it (after the first free it raises its mmap threshold to
//! the block's size, so later blocks come from the arenas instead of fresh mappings). The
//! page sat at 400-700 MiB after a few dozen sign-ins (docs/soak.md). Two long-lived
//! threads keep at most two hashes' worth, whatever the allocator does.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads. Callers hold a place in [`crate::session::LoginGate`]'s pool, which
/// has as many places as there are threads, so a job never waits behind more than the
/// others' places.
pub struct HashThreads {
    jobs: SyncSender<Job>,
}

/// The hashing threads are gone (the page is stopping): the caller answers 503.
#[derive(Debug, thiserror::Error)]
#[error("the password check is not available while the page stops; try again in a moment")]
pub struct Stopped;

impl HashThreads {
    pub fn start(threads: usize) -> HashThreads {
        // Each place in the gate's pool holds at most one job, queued or running.
        let (jobs, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || work(&rx))
                .expect("a thread for password hashing");
        }
        HashThreads { jobs }
    }

    /// Runs `f` on a hashing thread and waits for its answer without blocking the runtime.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // Cannot happen while callers hold a pool place; refuse rather than block the runtime.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return Err(Stopped),
        }
        rx.await.map_err(|_| Stopped)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while hashing.
        let job = match rx.lock().map(|r| r.recv()) {
            Ok(Ok(job)) => job,
            _ => return,
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_two_named_threads() {
        let h = HashThreads::start(2);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..20 {
            names.insert(h.run(|| std::thread::current().name().unwrap().to_string()).await.unwrap());
        }
        assert!(names.iter().all(|n| n.starts_with("password-hash-")) && names.len() <= 2, "{names:?}");
    }
}
