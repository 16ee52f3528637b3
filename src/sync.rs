//! The one poison-tolerant lock. A std mutex is poisoned when a thread panics while holding
//! it; the gateway's mutexes guard small tables and counters that are updated in single
//! steps, so the data is still usable, and a second panic would only take down another
//! connection task (or the process). Every lock in the crate goes through here.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m`, taking the data as it is if a panicking holder poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Consume `m`, with the same tolerance as [`lock`].
pub fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_yields_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = held.lock().unwrap();
            *g = 2;
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
        let m = std::sync::Arc::try_unwrap(m).unwrap();
        assert_eq!(into_inner(m), 2);
    }
}
