//! One parallel map for the experiments: jobs handed out in order to a few worker threads,
//! each result in its own slot, so the output never depends on scheduling.

use std::sync::Mutex;

/// `f(0)`, …, `f(n − 1)` on up to `threads` scoped threads, returned in index order. A job that
/// panics takes its worker down; its slot then reads `None`.
pub(crate) fn parallel_map<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<Option<T>> {
    let next = Mutex::new(0usize);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            scope.spawn(|| loop {
                let k = {
                    let Ok(mut i) = next.lock() else { return };
                    let k = *i;
                    *i += 1;
                    k
                };
                if k >= n {
                    return;
                }
                let value = f(k);
                if let Ok(mut slot) = slots[k].lock() {
                    *slot = Some(value);
                }
            });
        }
    });
    slots.into_iter().map(|s| s.into_inner().ok().flatten()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order_whatever_the_threads() {
        for threads in [1, 2, 7] {
            let out = parallel_map(20, threads, |i| i * i);
            assert_eq!(out, (0..20).map(|i| Some(i * i)).collect::<Vec<_>>());
        }
        assert!(parallel_map(0, 2, |i| i).is_empty());
    }
}
