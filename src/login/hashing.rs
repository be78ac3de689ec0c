//! Password hashing off the async executor.
//!
//! An argon2 verification takes about 15 ms of one core with the default
//! parameters. Run on an async worker thread, every login stalls every
//! request that thread serves meanwhile. [`HashingPool`] runs them on a few
//! threads of its own instead: at most `workers` at once (by default the
//! number of cores minus one, at least one), with at most `queue` more
//! waiting. An attempt beyond that is refused at once with
//! [`LoginError::Busy`] (`503` with `Retry-After`) rather than wait without
//! bound or hold its memory.
//!
//! Each thread keeps its argon2 working memory (19 MiB with the default
//! parameters) between jobs, so a login spray costs no allocator churn and
//! memory stays bounded by one buffer per thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use argon2::Block;

use super::LoginError;

/// A job: its work, given the thread's working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The default number of verifications waiting beyond those running.
pub const DEFAULT_HASHING_QUEUE: usize = 64;

/// A bounded pool of threads for password hashing, off the async executor.
///
/// An argon2 verification takes about 15 ms of one core with the default
/// parameters; run on an async worker thread, it stalls every request that
/// thread serves meanwhile. The pool runs at most `workers` at once (by
/// default the number of cores minus one, at least one), with at most
/// `queue` more waiting; an attempt beyond that is refused at once with
/// [`LoginError::Busy`] (`503` with `Retry-After`). Each thread keeps its
/// argon2 working memory (19 MiB with the default parameters) between jobs.
/// Cheap to clone: clones share the threads.
#[derive(Clone)]
pub struct HashingPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    sender: SyncSender<Job>,
    workers: usize,
    queue: usize,
}

impl std::fmt::Debug for HashingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingPool")
            .field("workers", &self.inner.workers)
            .field("queue", &self.inner.queue)
            .finish()
    }
}

impl Default for HashingPool {
    /// The number of cores minus one threads (at least one), and
    /// [`DEFAULT_HASHING_QUEUE`] waiting.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        HashingPool::new(cores.saturating_sub(1).max(1), DEFAULT_HASHING_QUEUE)
    }
}

impl HashingPool {
    /// A pool of `workers` threads (at least one) with at most `queue` jobs
    /// waiting. The threads end when the last clone of the pool is dropped.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        // The dummy hash is made now, not by the first unknown user's
        // login, whose answer would take longer than a wrong password's.
        let _ = dummy_hash();
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            // A thread that cannot be started leaves the pool smaller; with
            // none at all, jobs wait in the queue until it is full and are
            // then refused, never run on the caller's thread.
            let _ = std::thread::Builder::new()
                .name(format!("authgate-hash-{index}"))
                .spawn(move || work(&receiver));
        }
        HashingPool {
            inner: Arc::new(PoolInner {
                sender,
                workers,
                queue,
            }),
        }
    }

    /// The number of threads.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// The pool shared by every store in the process that was given no pool
    /// of its own (the [`Authenticator`](super::Authenticator) trait's
    /// provided [`verify_password`](super::Authenticator::verify_password)
    /// and [`MemoryUsers`](super::MemoryUsers) by default): started on first
    /// use, [`HashingPool::default`]'s size.
    pub fn shared() -> &'static HashingPool {
        static SHARED: OnceLock<HashingPool> = OnceLock::new();
        SHARED.get_or_init(HashingPool::default)
    }

    /// An argon2id hash of `password` in PHC string form
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`, the crate's default
    /// parameters), computed on the pool: what a store keeps instead of the
    /// password. [`LoginError::Busy`] when the queue is full.
    pub async fn hash(&self, password: &str) -> Result<String, LoginError> {
        let password = password.to_owned();
        self.run(move |_| super::users::hash_password(&password))?
            .await?
            .map_err(|err| LoginError::Internal(err.to_string()))
    }

    /// Whether `password` matches the argon2 `hash` (PHC string form),
    /// verified on the pool. With `None` (no such account, or an account
    /// without a password) it verifies against a fixed dummy hash and
    /// answers `false`, so an unknown username costs the same time as a
    /// wrong password and answers never tell which accounts exist. A hash
    /// that does not parse never matches. [`LoginError::Busy`] when the
    /// queue is full.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, LoginError> {
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(hash) => hash.into(),
            None => dummy_hash()?,
        };
        let password = password.to_owned();
        let matched = self
            .run(move |memory| super::users::verify_password(&password, &hash, memory))?
            .await?;
        Ok(known && matched)
    }

    /// Runs `job` on the pool; its answer when it is done, or
    /// [`LoginError::Busy`] at once when the queue is full.
    pub(crate) fn run<T, F>(&self, job: F) -> Result<Answer<T>, LoginError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    {
        let slot = Arc::new(Slot::default());
        let reply = Reply(Arc::clone(&slot));
        let job: Job = Box::new(move |memory| reply.send(job(memory)));
        match self.inner.sender.try_send(job) {
            Ok(()) => Ok(Answer(slot)),
            Err(TrySendError::Full(_)) => Err(LoginError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                Err(LoginError::Internal("the hashing pool has stopped".into()))
            }
        }
    }
}

/// The hash unknown accounts are verified against: one per process,
/// with the default parameters, so its cost is a real account's.
fn dummy_hash() -> Result<Arc<str>, LoginError> {
    static DUMMY: OnceLock<Result<Arc<str>, String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            super::users::hash_password("tower-authgate dummy password")
                .map(Arc::from)
                .map_err(|err| err.to_string())
        })
        .clone()
        .map_err(LoginError::Internal)
}

/// A worker's loop: one job at a time, with the thread's working memory.
fn work(receiver: &Mutex<Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            // A job that panics answers an error (its reply is dropped) and
            // the thread carries on: the pool never loses a thread.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
            }
            Err(_) => return,
        }
    }
}

/// Where a job's answer lands.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    value: Option<Result<T, LoginError>>,
    waker: Option<Waker>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            state: Mutex::new(SlotState {
                value: None,
                waker: None,
            }),
        }
    }
}

impl<T> Slot<T> {
    fn fill(&self, value: Result<T, LoginError>) {
        let waker = match self.state.lock() {
            Ok(mut state) => {
                if state.value.is_none() {
                    state.value = Some(value);
                }
                state.waker.take()
            }
            Err(_) => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The worker's end of a [`Slot`]. Dropped without an answer (the job
/// panicked), it answers an internal error, so no caller waits forever.
struct Reply<T>(Arc<Slot<T>>);

impl<T> Reply<T> {
    fn send(self, value: T) {
        self.0.fill(Ok(value));
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        self.0
            .fill(Err(LoginError::Internal("a hashing job failed".into())));
    }
}

/// The caller's end: a future of the job's answer.
pub(crate) struct Answer<T>(Arc<Slot<T>>);

impl<T> Future for Answer<T> {
    type Output = Result<T, LoginError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut state) = self.0.state.lock() else {
            return Poll::Ready(Err(LoginError::Internal("hashing pool poisoned".into())));
        };
        match state.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
            std::thread::park();
        }
    }

    #[test]
    fn jobs_run_on_the_pool_and_a_full_queue_refuses_at_once() {
        let pool = HashingPool::new(1, 1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        // One job holds the only thread, one waits in the queue.
        let running = pool
            .run(move |_| {
                let _ = wait.lock().map(|w| w.recv());
                std::thread::current().name().map(str::to_owned)
            })
            .unwrap();
        // Let the thread take the first job off the queue.
        while pool.inner.sender.try_send(Box::new(|_| {})).is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(matches!(pool.run(|_| 1), Err(LoginError::Busy)));
        release.send(()).unwrap();
        let name = block_on(running).unwrap();
        assert_eq!(name.as_deref(), Some("authgate-hash-0"));
    }

    #[test]
    fn a_job_that_panics_answers_an_error_and_the_thread_carries_on() {
        let pool = HashingPool::new(1, 4);
        let answer = pool.run(|_| -> u8 { panic!("boom") }).unwrap();
        assert!(matches!(block_on(answer), Err(LoginError::Internal(_))));
        assert_eq!(block_on(pool.run(|_| 7).unwrap()), Ok(7));
    }
}
