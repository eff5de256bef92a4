//! A value the control threads publish and the workers adopt: RCU-style, an
//! atomic pointer swap plus a generation the workers compare once per turn
//! (no lock, no reference-count traffic unless the value changed).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwap;

/// The published value and its generation.
#[derive(Debug)]
pub struct Published<T> {
    value: ArcSwap<T>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    /// Publishes `value` as `generation`.
    pub fn new(value: Arc<T>, generation: u64) -> Self {
        Self {
            value: ArcSwap::new(value),
            generation: AtomicU64::new(generation),
        }
    }

    /// The current generation: it changes whenever the value does.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// Replaces the value; readers see the new generation after the value.
    pub fn publish(&self, value: Arc<T>, generation: u64) {
        self.value.store(value);
        self.generation.store(generation, Ordering::Release);
    }
}

impl<T: Default> Default for Published<T> {
    fn default() -> Self {
        Self::new(Arc::default(), 0)
    }
}
