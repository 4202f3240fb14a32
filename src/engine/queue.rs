//! The work queue: a fixed pool of `--proc` OS threads around one mutex-guarded pair of
//! `VecDeque`s (the Go tool's `concurrent.List`, with two lanes). Workers push follow-up tasks
//! back; a pass ends when the queue is empty and no worker is busy (a busy worker may still
//! add work), or when a stop is asked for. Failed tasks are set aside so the caller can
//! re-queue them for another pass.
//!
//! Urgent tasks ([`Priority::Urgent`]) are always taken before normal ones. The engine marks an
//! image's own children, blobs and manifests urgent, so a worker starts a new image only when no
//! started image has work waiting: depth first, with about `--proc` images in flight at any time.
//! A task that finishes something ([`Priority::Next`]: a manifest push, whose blobs are all at the
//! destination) goes before everything queued: behind the blobs of the images started after it,
//! an image's push would wait for all of them, and a run would end in a burst of pushes that
//! each waited for the last blob of the run.
//!
//! A task that panics fails like any other (the panic becomes its error), and the busy count is
//! settled whatever the task did, so a pass always ends.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::{Condvar, Mutex};

/// Where a task joins the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// At the front: taken before anything queued.
    Next,
    /// At the back of the urgent lane: before any normal task.
    Urgent,
    /// At the back of the normal lane.
    Normal,
}

/// Which lane a task goes to.
pub trait Lane {
    fn priority(&self) -> Priority;
}

struct State<T, E> {
    urgent: VecDeque<T>,
    normal: VecDeque<T>,
    busy: usize,
    failed: Vec<(T, E)>,
}

pub struct Queue<T, E> {
    state: Mutex<State<T, E>>,
    ready: Condvar,
}

impl<T: Send + Lane, E: Send> Queue<T, E> {
    pub fn new() -> Self {
        Queue {
            state: Mutex::new(State { urgent: VecDeque::new(), normal: VecDeque::new(), busy: 0, failed: Vec::new() }),
            ready: Condvar::new(),
        }
    }

    pub fn push(&self, task: T) {
        {
            let mut st = self.state.lock();
            match task.priority() {
                Priority::Next => st.urgent.push_front(task),
                Priority::Urgent => st.urgent.push_back(task),
                Priority::Normal => st.normal.push_back(task),
            }
        }
        self.ready.notify_one();
    }

    /// Take the failures of the last pass.
    pub fn take_failed(&self) -> Vec<(T, E)> {
        std::mem::take(&mut self.state.lock().failed)
    }

    /// Take the tasks still queued (after a pass that was stopped).
    pub fn take_queued(&self) -> Vec<T> {
        let mut st = self.state.lock();
        let mut out: Vec<T> = st.urgent.drain(..).collect();
        out.extend(st.normal.drain(..));
        out
    }

    /// Run until the queue is drained (or `stop()` says so), with `workers` threads calling
    /// `work` on each task; a panic in `work` becomes `on_panic(message)`.
    pub fn run_pass<F>(&self, workers: usize, work: F, on_panic: fn(String) -> E, stop: fn() -> bool)
    where
        F: Fn(&T) -> Result<(), E> + Sync,
    {
        std::thread::scope(|s| {
            for i in 0..workers.max(1) {
                let work = &work;
                let spawned = std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn_scoped(s, move || self.worker(work, on_panic, stop));
                if let Err(e) = spawned {
                    // Fewer workers still finish the pass; none at all is reported by the caller
                    // finding every task still queued.
                    log::error!("cannot start worker thread {i}: {e}");
                }
            }
        });
    }

    fn worker<F: Fn(&T) -> Result<(), E>>(&self, work: &F, on_panic: fn(String) -> E, stop: fn() -> bool) {
        loop {
            let task = {
                let mut st = self.state.lock();
                loop {
                    if stop() {
                        self.ready.notify_all();
                        return;
                    }
                    if let Some(t) = st.urgent.pop_front().or_else(|| st.normal.pop_front()) {
                        st.busy += 1;
                        break t;
                    }
                    if st.busy == 0 {
                        // Nothing queued and nobody can add more: the pass is over.
                        self.ready.notify_all();
                        return;
                    }
                    // Timed, so that a stop is noticed by idle workers too.
                    self.ready.wait_for(&mut st, std::time::Duration::from_millis(200));
                }
            };
            let result =
                catch_unwind(AssertUnwindSafe(|| work(&task))).unwrap_or_else(|p| Err(on_panic(panic_message(&p))));
            let mut st = self.state.lock();
            st.busy -= 1;
            if let Err(e) = result {
                st.failed.push((task, e));
            }
            // Wake everyone: new tasks may have been pushed, or the pass may be over.
            self.ready.notify_all();
        }
    }
}

/// The message a panic carried.
pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 100 and over go next; odd numbers are urgent.
    impl Lane for u32 {
        fn priority(&self) -> Priority {
            match self {
                100.. => Priority::Next,
                n if n % 2 == 1 => Priority::Urgent,
                _ => Priority::Normal,
            }
        }
    }

    fn never() -> bool {
        false
    }

    #[test]
    fn follow_up_tasks_and_failures() {
        // Each task n > 0 pushes n-1 twice: a full binary tree of 2^5 - 1 tasks.
        let q: Queue<u32, u32> = Queue::new();
        q.push(4);
        let seen = AtomicUsize::new(0);
        let work = |&n: &u32| {
            seen.fetch_add(1, Ordering::SeqCst);
            if n > 0 {
                q.push(n - 1);
                q.push(n - 1);
            }
            if n == 0 {
                Err(n)
            } else {
                Ok(())
            }
        };
        q.run_pass(3, work, |_| 99, never);
        assert_eq!(seen.load(Ordering::SeqCst), 31);
        assert_eq!(q.take_failed().len(), 16);
        assert!(q.take_failed().is_empty());
    }

    #[test]
    fn empty_queue_ends() {
        let q: Queue<u32, ()> = Queue::new();
        q.run_pass(4, |_| Ok(()), |_| (), never);
    }

    #[test]
    fn urgent_lane_first_and_panics_are_failures() {
        let q: Queue<u32, String> = Queue::new();
        for n in [2, 4, 3, 6, 5] {
            q.push(n);
        }
        let order = Mutex::new(Vec::new());
        q.run_pass(
            1,
            |&n| {
                order.lock().push(n);
                if n == 6 {
                    panic!("task six broke");
                }
                Ok(())
            },
            |m| m,
            never,
        );
        assert_eq!(*order.lock(), [3, 5, 2, 4, 6]);
        let failed = q.take_failed();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].1.contains("task six broke"));
    }

    #[test]
    fn a_task_that_goes_next_is_taken_before_everything_queued() {
        let q: Queue<u32, ()> = Queue::new();
        for n in [2, 3, 5, 101, 4, 102] {
            q.push(n);
        }
        let order = Mutex::new(Vec::new());
        let work = |&n: &u32| {
            order.lock().push(n);
            Ok(())
        };
        q.run_pass(1, work, |_| (), never);
        assert_eq!(*order.lock(), [102, 101, 3, 5, 2, 4]);
    }

    #[test]
    fn a_stop_leaves_tasks_queued() {
        let q: Queue<u32, ()> = Queue::new();
        q.push(2);
        q.push(4);
        q.run_pass(2, |_| Ok(()), |_| (), || true);
        assert_eq!(q.take_queued().len(), 2);
    }
}
