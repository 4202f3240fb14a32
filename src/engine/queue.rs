//! The work queue: a fixed pool of `--proc` OS threads around one mutex-guarded `VecDeque`
//! (the Go tool's `concurrent.List`). Workers push follow-up tasks back into the same queue;
//! a pass ends when the queue is empty and no worker is busy (a busy worker may still add
//! work). Failed tasks are set aside so the caller can re-queue them for another pass.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

struct State<T, E> {
    tasks: VecDeque<T>,
    busy: usize,
    failed: Vec<(T, E)>,
}

pub struct Queue<T, E> {
    state: Mutex<State<T, E>>,
    ready: Condvar,
}

impl<T: Send, E: Send> Queue<T, E> {
    pub fn new() -> Self {
        Queue {
            state: Mutex::new(State { tasks: VecDeque::new(), busy: 0, failed: Vec::new() }),
            ready: Condvar::new(),
        }
    }

    pub fn push(&self, task: T) {
        self.state.lock().tasks.push_back(task);
        self.ready.notify_one();
    }

    /// Take the failures of the last pass.
    pub fn take_failed(&self) -> Vec<(T, E)> {
        std::mem::take(&mut self.state.lock().failed)
    }

    /// Run until the queue is drained, with `workers` threads calling `work` on each task.
    pub fn run_pass<F>(&self, workers: usize, work: F)
    where
        F: Fn(&T) -> Result<(), E> + Sync,
    {
        std::thread::scope(|s| {
            for i in 0..workers.max(1) {
                let work = &work;
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn_scoped(s, move || self.worker(work))
                    .expect("cannot spawn a worker thread");
            }
        });
    }

    fn worker<F: Fn(&T) -> Result<(), E>>(&self, work: &F) {
        loop {
            let task = {
                let mut st = self.state.lock();
                loop {
                    if let Some(t) = st.tasks.pop_front() {
                        st.busy += 1;
                        break t;
                    }
                    if st.busy == 0 {
                        // Nothing queued and nobody can add more: the pass is over.
                        self.ready.notify_all();
                        return;
                    }
                    self.ready.wait(&mut st);
                }
            };
            let result = work(&task);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn follow_up_tasks_and_failures() {
        // Each task n > 0 pushes n-1 twice: a full binary tree of 2^5 - 1 tasks.
        let q: Queue<u32, u32> = Queue::new();
        q.push(4);
        let seen = AtomicUsize::new(0);
        q.run_pass(3, |&n| {
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
        });
        assert_eq!(seen.load(Ordering::SeqCst), 31);
        assert_eq!(q.take_failed().len(), 16);
        assert!(q.take_failed().is_empty());
    }

    #[test]
    fn empty_queue_ends() {
        let q: Queue<u32, ()> = Queue::new();
        q.run_pass(4, |_| Ok(()));
    }
}
